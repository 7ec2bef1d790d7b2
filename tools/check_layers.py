#!/usr/bin/env python3
"""Checks the layer map of docs/ARCHITECTURE.md: every #include "llmkit/<layer>/..." in
src/llmkit/<layer>/ must point to the same layer or one below it, and cli/ and include/llmkit/
may include only the public headers (include/llmkit/*.h). Exit 1 with one line per violation."""
import pathlib
import re
import sys

# Rank of each layer: a layer may include only layers of lower or equal rank. Layers on the same
# rank are siblings and must not include each other.
RANK = {
    "base": 0,
    "tensor": 1,
    "kernels": 2,
    "ops": 3,
    "autograd": 4,
    "io": 4, "comm": 4,
    "tokenizer": 5, "nn": 5,
    "models": 6,
    "runtime": 7,
    "train": 8, "peft": 8, "quant": 8, "align": 8, "eval": 8, "rag": 8, "serve": 8,
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"llmkit/([^"]+)"', re.M)


def layer_of(rel: str):
    first = rel.split("/")[0]
    return first if first in RANK else None


def main(root: pathlib.Path) -> int:
    bad = []
    public = {p.name for p in (root / "include/llmkit").glob("*.h")}
    for path in sorted((root / "src/llmkit").rglob("*")):
        if path.suffix not in (".h", ".cc", ".cu", ".cuh"):
            continue
        rel = path.relative_to(root / "src/llmkit")
        own = layer_of(str(rel))
        if own is None:
            continue  # top-level glue (version.cc) may include anything
        for inc in INCLUDE.findall(path.read_text(errors="replace")):
            target = layer_of(inc)
            if target is None:
                if inc not in public:
                    bad.append(f"{path.relative_to(root)}: includes unknown llmkit/{inc}")
                continue
            if target != own and RANK[target] >= RANK[own]:
                bad.append(f"{path.relative_to(root)}: layer '{own}' (rank {RANK[own]}) includes "
                           f"'llmkit/{inc}' from layer '{target}' (rank {RANK[target]}); includes go downward only")
    for folder in ("cli", "include/llmkit"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".h", ".cc"):
                continue
            for inc in INCLUDE.findall(path.read_text(errors="replace")):
                if "/" in inc or inc not in public:
                    bad.append(f"{path.relative_to(root)}: includes internal header llmkit/{inc}; "
                               f"{folder}/ may use only the public headers in include/llmkit/")
    for line in bad:
        print(line)
    print(f"checked layer includes: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))
