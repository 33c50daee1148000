#!/bin/sh
# One case of a YAML error corpus (tests/model-errors/, tests/study/errors/). From the repository
# root, runs
#   COMMAND... DIR/CASE.yaml [extra arguments from DIR/expected.tsv]
# and requires: exit status 2, nothing on stdout, and stderr exactly the one line that expected.tsv
# gives for CASE.yaml (a sanitizer report or a notice on stderr fails the case too).
#
# usage: error-corpus-case.sh REPO_ROOT DIR CASE COMMAND...
#   DIR: the corpus folder relative to REPO_ROOT; CASE: a file name in it, without .yaml;
#   COMMAND: the program and its first arguments, e.g. `build/yolopipe info`.
# exit: 0 pass, 1 fail.
set -u

if [ $# -lt 4 ]; then
    echo "usage: $0 REPO_ROOT DIR CASE COMMAND..." >&2
    exit 1
fi
root=$1
dir=$2
name=$3
shift 3
exe=$1
shift
case $exe in
/*) ;;
*) exe=$(pwd)/$exe ;;
esac
cd "$root" || exit 1

file=$name.yaml
if [ ! -f "$dir/$file" ]; then
    echo "FAIL $name: no file $dir/$file" >&2
    exit 1
fi
tab=$(printf '\t')
matches=$(awk -F "$tab" -v f="$file" '$1 == f' "$dir/expected.tsv")
if [ "$(printf '%s\n' "$matches" | grep -c .)" -ne 1 ]; then
    echo "FAIL $name: expected.tsv must have exactly one line for $file" >&2
    exit 1
fi
extra=$(printf '%s\n' "$matches" | cut -f 2)
expected=$(printf '%s\n' "$matches" | cut -f 3-)
[ "$extra" = "-" ] && extra=

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$expected" >"$tmp/expected-stderr"
# $extra is split into words on purpose: "--scale n" is two arguments.
# shellcheck disable=SC2086
"$exe" "$@" "$dir/$file" $extra >"$tmp/stdout" 2>"$tmp/stderr"
status=$?

failed=0
if [ "$status" -ne 2 ]; then
    echo "FAIL $name: exit status $status, expected 2" >&2
    failed=1
fi
if [ -s "$tmp/stdout" ]; then
    echo "FAIL $name: stdout is not empty:" >&2
    head -n 20 "$tmp/stdout" >&2
    failed=1
fi
if ! cmp -s "$tmp/expected-stderr" "$tmp/stderr"; then
    echo "FAIL $name: stderr differs from the line in $dir/expected.tsv (- expected, + actual):" >&2
    diff -u "$tmp/expected-stderr" "$tmp/stderr" | sed '1,2d' >&2
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    echo "command: (cd $root && $exe $* $dir/$file${extra:+ $extra})" >&2
    exit 1
fi
echo "ok $name: $expected"
exit 0
