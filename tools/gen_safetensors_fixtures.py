#!/usr/bin/env python3
"""Developer tool (needs PyPI `safetensors` and numpy; CI never runs it).

1. Writes testdata/safetensors/reference.safetensors with the reference writer, so the C++ reader
   is tested against an independent implementation (tests/test_safetensors.cc).
2. With --check FILE_OR_FOLDER: loads a file written by llmkit (or every *.safetensors in a folder)
   with the reference reader and prints each tensor, so the writer is checked the other way round.
"""
import argparse
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent


def write_fixture() -> None:
    out = ROOT / "testdata" / "safetensors"
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "weight": (np.arange(12, dtype=np.float32) * 0.5 - 1.0).reshape(3, 4),
        "ids": np.array([1, 2, -7], dtype=np.int64),
        "half": np.array([0.5, -1.0], dtype=np.float16),
    }
    save_file(tensors, str(out / "reference.safetensors"), metadata={"format": "pt"})
    print("wrote", out / "reference.safetensors")


def check(path: pathlib.Path) -> int:
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    for f in files:
        loaded = load_file(str(f))  # raises on any format violation
        for name, arr in loaded.items():
            print(f"{f.name}: {name} {arr.dtype} {list(arr.shape)}")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", type=pathlib.Path)
    a = ap.parse_args()
    sys.exit(check(a.check) if a.check else write_fixture())
