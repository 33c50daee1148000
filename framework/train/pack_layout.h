// A list of tensors packed one after another in one buffer (optimizer state, the EMA copy), cut
// into chunks for parallel loops. The chunks depend only on the tensors' sizes, so a loop over
// them, or a sum of per-chunk partial sums taken in chunk order, gives the same result for any
// number of threads.
#pragma once

#include <stdint.h>

enum { PACK_CHUNK_ELEMS = 1 << 14 };

// Elements [begin, end) of one tensor; never more than PACK_CHUNK_ELEMS, never across tensors.
typedef struct PackChunk {
    int entry;
    int64_t begin, end;
} PackChunk;

typedef struct PackLayout {
    int n_entries;
    int64_t *offset;    // (n_entries) where each tensor starts in the packed buffer; owned
    int64_t n_elems;    // all tensors together
    int n_chunks;
    PackChunk *chunks;  // in buffer order; owned
} PackLayout;

// Lays out tensors of the given sizes in order. Free with pack_layout_free.
PackLayout pack_layout_make(const int64_t *n_elems, int n_entries);
void pack_layout_free(PackLayout *layout);
