#!/usr/bin/env bash
# Every command README.md tells a user to type works when typed as written (README "Contributing").
# The command lines are the lines of its ```sh and ```bash blocks (a line ending in `\` continues on
# the next; comment lines are skipped) and, in the other blocks, the transcript lines that begin with
# `$ `. A line whose trailing comment begins with `# slow` is left out (full trainings, studies,
# benchmarks, builds, installs). The others run in order, each with `bash -c` and a time limit, in
# a temporary copy of the work tree (tracked and untracked files that git does not ignore: no data,
# runs or builds), where build/yolopipe is the build's binary and data/ holds the synthetic datasets
# the clone has (or the first command that needs one generates it, as for a user). Fails naming the README line of each command that exits
# non-zero. The list of what ran is printed so that a skipped command shows.
# Usage: check-readme.sh SOURCE_ROOT YOLOPIPE [README]
set -uo pipefail
root=$(realpath "$1") yolopipe=$(realpath "$2") readme=${3:-$root/README.md}
readme=$(realpath "$readme")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
limit=${README_COMMAND_LIMIT:-120}  # seconds per command

# The work tree as a fresh clone has it (plus what is not committed yet), and the binary where
# README says it is.
(cd "$root" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) |
    tar -C "$tmp" -xf - 2>/dev/null
mkdir -p "$tmp/build" && ln -s "$yolopipe" "$tmp/build/yolopipe"
# and the plotting script with its modules, which meson copies beside the binary
for f in "$(dirname "$yolopipe")"/*.py; do [[ -f $f ]] && ln -s "$f" "$tmp/build/$(basename "$f")"; done
# The synthetic datasets the clone has generated already (read only by the commands), else the first
# command that needs one generates it.
for d in "$root"/data/*/; do
    [[ -f $d/data.yaml ]] && mkdir -p "$tmp/data" && ln -s "$(realpath "$d")" "$tmp/data/$(basename "$d")"
done
# What README's mpirun lines say a user needs as root and in a container.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none

# LINE<TAB>COMMAND for every command to run; "slow" lines as LINE<TAB>#slow COMMAND.
extract() {
    awk '
    function flush() {
        if (cmd == "") return
        if (cmd ~ /#[ \t]*slow/) printf "%d\t#slow %s\n", start, cmd
        else printf "%d\t%s\n", start, cmd
        cmd = ""
    }
    /^[ \t]*```/ {
        flush()
        if (!fence) { fence = 1; shell = ($0 ~ /```(sh|bash)[ \t]*$/) } else fence = 0
        next
    }
    !fence { next }
    {
        line = $0
        if (cmd != "") { sub(/^[ \t]+/, "", line); cmd = cmd " " line }
        else if (shell) {
            sub(/^[ \t]+/, "", line)
            if (line == "" || line ~ /^#/) next
            cmd = line; start = NR
        } else if (line ~ /^\$ /) { cmd = substr(line, 3); start = NR }
        else next
        if (cmd ~ /\\$/) { sub(/\\$/, "", cmd); next }
        flush()
    }
    END { flush() }' "$readme"
}

failures=0 ran=0 skipped=0
started=$(date +%s)
while IFS=$'\t' read -r line cmd; do
    if [[ $cmd == "#slow "* ]]; then
        echo "skip $(basename "$readme"):$line: ${cmd#\#slow }"
        skipped=$((skipped + 1))
        continue
    fi
    ran=$((ran + 1))
    t0=$(date +%s)
    (cd "$tmp" && timeout -k 5 "$limit" bash -c "$cmd") >"$tmp/.out" 2>&1 </dev/null
    rc=$?
    if [[ $rc == 0 ]]; then
        echo "ok   $(basename "$readme"):$line: $cmd ($(($(date +%s) - t0)) s)"
    else
        echo "FAIL $(basename "$readme"):$line: $cmd: exit $rc$([[ $rc == 124 ]] && echo " (over $limit s: mark it # slow?)")"
        tail -n 5 "$tmp/.out" | sed 's/^/     /'
        failures=$((failures + 1))
    fi
done < <(extract)
echo "$ran commands run, $skipped marked slow, $failures failed in $(($(date +%s) - started)) s"
[[ $ran -gt 0 && $failures == 0 ]]
