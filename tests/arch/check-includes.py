#!/usr/bin/env python3
"""The architecture test: every #include "..." in the tree points down DESIGN.md's layout table.

usage: check-includes.py ROOT

Reads every .c, .h and .cu file under ROOT (tests/ and experiments/ may include anything) and
prints one line per violation, `file:line: message`: an include from a folder to one that its row
of the table does not allow (kernels/ including layers/, core/ including anything outside core/,
schedule/ seeing tensors, ...), an include that names no file of the tree, or a source file left
directly in framework/. Exit 0 when there is none, 1 otherwise.
"""
import os
import re
import sys

# Folder -> the folders it may include besides itself (DESIGN.md "Layout", its last column).
# None: anything.
ALLOWED = {
    "framework/cli": None,
    "framework/study": {"framework/core", "framework/config", "partition", "schedule"},
    "framework/train": {"framework/runtime", "framework/config", "framework/eval", "framework/data",
                        "schedule", "partition", "layers", "kernels", "framework/core"},
    "framework/runtime": {"framework/core", "framework/config", "framework/data", "framework/eval", "layers",
                          "schedule", "partition", "kernels"},
    "framework/config": {"framework/core", "framework/data", "layers", "partition", "schedule"},
    "framework/eval": {"framework/core", "layers", "framework/data"},
    "framework/data": {"framework/core", "kernels"},
    "schedule": {"partition", "framework/core"},
    "partition": {"layers", "framework/core"},
    "layers": {"kernels", "framework/core"},
    "kernels": {"framework/core"},
    "framework/core": set(),
    "tests": None,
    "experiments": None,
}
# Headers a folder may not include although its row allows their folder.
DENIED = {
    "schedule": {"framework/core/tensor.h": "schedule/ knows nothing about tensors"},
}
GENERATED = {"build_config.h"}  # written by meson into the build directory
SOURCE_EXTENSIONS = (".c", ".h", ".cu")
FIXTURE = "tests/arch/upward"  # a tree of its own, with its includes against the layout on purpose
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def folder_of(path):
    """The layout folder of a repository-relative path, or None when it is in none."""
    parts = path.split("/")
    if parts[0] == "framework":
        return "framework/" + parts[1] if len(parts) > 2 else None
    return parts[0] if parts[0] in ALLOWED else None


def source_files(root):
    for top, dirs, files in os.walk(root):
        here = os.path.relpath(top, root).replace(os.sep, "/")
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.startswith("build")
                         and (here + "/" + d).lstrip("./") != FIXTURE)
        for name in sorted(files):
            if name.endswith(SOURCE_EXTENSIONS):
                yield os.path.relpath(os.path.join(top, name), root).replace(os.sep, "/")


def check_file(root, path):
    src = folder_of(path)
    if src is None:
        yield f"{path}:1: not in a folder of DESIGN.md's layout table (framework/ files live in framework/<concern>/)"
        return
    allowed = ALLOWED[src]
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = m.group(1)
            if target in GENERATED:
                continue
            # Root-relative, as the tree writes includes; a bare name is beside the including file.
            if not os.path.isfile(os.path.join(root, target)):
                beside = os.path.normpath(os.path.join(os.path.dirname(path), target)).replace(os.sep, "/")
                if not os.path.isfile(os.path.join(root, beside)):
                    yield f'{path}:{number}: #include "{target}" names no file of the tree'
                    continue
                target = beside
            dst = folder_of(target)
            if target in DENIED.get(src, {}):
                yield f'{path}:{number}: #include "{target}": {DENIED[src][target]}'
            elif allowed is None or dst == src:
                continue
            elif dst is None or dst not in allowed:
                may = ", ".join(sorted(allowed | {src})) or src
                yield f'{path}:{number}: #include "{target}" points up the layout: {src}/ may include only {may}'


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    root = argv[1]
    files = list(source_files(root))
    problems = [p for path in files for p in check_file(root, path)]
    for p in problems:
        print(p)
    print(f"{len(files)} files checked, {len(problems)} include(s) against the layout")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
