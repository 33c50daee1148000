#!/bin/sh
# Keeps a YAML error corpus and its list in step: every .yaml in the corpus folder has exactly one
# line in expected.tsv, every line names an existing file, has three tab-separated fields (file,
# extra arguments or '-', expected stderr line) and expects a message at that file's path.
#
# usage: error-corpus-check.sh REPO_ROOT DIR     (DIR: the corpus folder relative to REPO_ROOT,
#                                                 e.g. tests/model-errors)
# exit: 0 pass, 1 fail.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 REPO_ROOT DIR" >&2
    exit 1
fi
dir=$2
cd "$1/$dir" || exit 1
tab=$(printf '\t')
failed=0

for path in *.yaml; do
    [ -e "$path" ] || continue
    n=$(awk -F "$tab" -v f="$path" '$1 == f' expected.tsv | wc -l)
    if [ "$n" -ne 1 ]; then
        echo "FAIL: $path has $n lines in expected.tsv, expected 1" >&2
        failed=1
    fi
done

if ! awk -F "$tab" -v dir="$dir" '
    NF != 3 || $1 == "" || $2 == "" || $3 == "" {
        printf "FAIL: expected.tsv line %d: need 3 non-empty tab-separated fields, found %d\n", NR, NF; bad = 1; next
    }
    $1 !~ /\.yaml$/ { printf "FAIL: expected.tsv line %d: %s is not a .yaml file\n", NR, $1; bad = 1 }
    index($3, dir "/" $1 ":") != 1 {
        printf "FAIL: expected.tsv line %d: the message must start with %s/%s:\n", NR, dir, $1; bad = 1
    }
    END { exit bad }' expected.tsv >&2; then
    failed=1
fi

cut -f 1 expected.tsv | while IFS= read -r file; do
    [ -f "$file" ] || echo "FAIL: expected.tsv lists $file, which is not in $(pwd)"
done | grep . >&2 && failed=1

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "ok: $(wc -l <expected.tsv) cases, one line each in expected.tsv"
