// Minimal JSON output helpers for the --json modes (one object per run, for scripts).
#pragma once

#include <stdio.h>

// Writes s as a JSON string literal, quotes included, escaping what JSON requires.
void json_write_string(FILE *f, const char *s);
