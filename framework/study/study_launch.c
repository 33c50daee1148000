// A measured point's launcher line and its log.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/study/study_launch.h"

void launch_words_free(int n, char **words) {
    for (int i = 0; i < n; i++) free(words[i]);
    free(words);
}

// word with each {world} and {nodes} replaced; NULL for another {field}.
static char *expand_word(const char *word, size_t len, long world, long nodes, char *bad, size_t bad_cap) {
    size_t cap = len + 64, n = 0;
    char *out = yp_malloc(cap);
    for (size_t i = 0; i < len;) {
        if (word[i] == '{') {
            const char *close = memchr(word + i, '}', len - i);
            size_t field_len = close ? (size_t)(close - (word + i)) - 1 : 0;
            long value;
            if (close && field_len == 5 && !strncmp(word + i + 1, "world", 5)) value = world;
            else if (close && field_len == 5 && !strncmp(word + i + 1, "nodes", 5)) value = nodes;
            else {
                snprintf(bad, bad_cap, "%.*s", close ? (int)field_len + 2 : (int)(len - i), word + i);
                free(out);
                return NULL;
            }
            n += (size_t)snprintf(out + n, cap - n, "%ld", value);
            i += field_len + 2;
        } else out[n++] = word[i++];
        if (n + 24 > cap) out = yp_realloc(out, cap *= 2);
    }
    out[n] = '\0';
    return out;
}

bool launch_expand_template(const char *tmpl, long world, long nodes, int *n_out, char ***argv_out, Error *err) {
    int n = 0, cap = 8;
    char **words = yp_malloc((size_t)cap * sizeof *words);
    for (const char *s = tmpl; *s;) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        size_t len = strcspn(s, " \t");
        char bad[64];
        char *w = expand_word(s, len, world, nodes, bad, sizeof bad);
        if (!w) {
            launch_words_free(n, words);
            return error_set(err, "the launcher names %s; it may use {world} and {nodes}", bad);
        }
        if (n + 2 > cap) words = yp_realloc(words, (size_t)(cap *= 2) * sizeof *words);
        words[n++] = w;
        s += len;
    }
    words[n] = NULL;
    *n_out = n;
    *argv_out = words;
    return true;
}

void launch_log_last_line(const char *log_path, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(log_path, "r");
    if (!f) return;
    char line[1024];
    bool in_launcher_box = false;  // mpirun frames its own messages between lines of dashes
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "-----", 5)) {
            in_launcher_box = !in_launcher_box;
            continue;
        }
        // Progress lines rewrite themselves with \r: keep the text after the last one.
        size_t len = strlen(line);
        while (len && line[len - 1] == '\r') line[--len] = '\0';
        char *last = strrchr(line, '\r');
        const char *text = last ? last + 1 : line;
        if (*text && !in_launcher_box) snprintf(out, cap, "%s", text);
    }
    fclose(f);
}
