#!/bin/sh
# The architecture test (DESIGN.md "Layout"): the tree's includes all point down the layout table,
# and the checker itself still catches each kind of violation in tests/arch/upward, a small tree
# with one of each (its findings must be exactly upward.expected).
#
# usage: check-arch.sh SOURCE_ROOT
set -u
root=$1
here=$root/tests/arch
status=0
python3 "$here/check-includes.py" "$root" || status=1
findings=$(python3 "$here/check-includes.py" "$here/upward")
rc=$?
if [ "$rc" -ne 1 ] || ! printf '%s\n' "$findings" | diff -u "$here/upward.expected" - >&2; then
    echo "FAIL: on tests/arch/upward the checker exited $rc (expected 1) or its findings differ from upward.expected" >&2
    status=1
fi
exit $status
