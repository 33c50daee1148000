#include "framework/train/pack_layout.h"

#include <stdlib.h>

#include "framework/core/error.h"

PackLayout pack_layout_make(const int64_t *n_elems, int n_entries) {
    PackLayout l = {.n_entries = n_entries};
    l.offset = yp_malloc((size_t)(n_entries ? n_entries : 1) * sizeof *l.offset);
    for (int i = 0; i < n_entries; i++) {
        YP_CHECK(n_elems[i] >= 0);
        l.offset[i] = l.n_elems;
        l.n_elems += n_elems[i];
        l.n_chunks += (int)((n_elems[i] + PACK_CHUNK_ELEMS - 1) / PACK_CHUNK_ELEMS);
    }
    l.chunks = yp_malloc((size_t)(l.n_chunks ? l.n_chunks : 1) * sizeof *l.chunks);
    int c = 0;
    for (int i = 0; i < n_entries; i++)
        for (int64_t b = 0; b < n_elems[i]; b += PACK_CHUNK_ELEMS)
            l.chunks[c++] = (PackChunk){i, b, b + PACK_CHUNK_ELEMS < n_elems[i] ? b + PACK_CHUNK_ELEMS : n_elems[i]};
    return l;
}

void pack_layout_free(PackLayout *layout) {
    free(layout->offset);
    free(layout->chunks);
    *layout = (PackLayout){0};
}
