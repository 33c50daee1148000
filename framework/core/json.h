// Minimal JSON output helpers for the --json modes and the run's records (one object per file, for
// scripts).
#pragma once

#include <stdint.h>
#include <stdio.h>

// Writes s as a JSON string literal, quotes included, escaping what JSON requires and also what a
// YAML reader refuses or reads as a line break (DEL, C1 controls, U+2028, U+2029, U+FEFF, U+FFFE,
// U+FFFF), so that the literal is also a double-quoted YAML scalar of the same text (experiment and
// study files are written with it).
void json_write_string(FILE *f, const char *s);
// Writes v with 10 significant digits (a nanosecond of a one-second time), or null when it is not
// finite (JSON has no NaN or infinity).
void json_write_number(FILE *f, double v);
void json_write_int(FILE *f, int64_t v);
