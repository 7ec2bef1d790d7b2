#!/usr/bin/env python3
"""Single-threaded encode throughput of the PyPI `tokenizers` library: the yardstick for
bench/bench_tokenizer.cc (same text: testdata/tokenizer/corpus.json joined with "\\n", invalid
UTF-8 replaced by U+FFFD, repeated to >= 1 MiB). Two modes, no encode_batch in either:
  whole     one encode() call on the whole ~1 MiB text per iteration;
  per-line  one encode() call per line of that text (~11k calls), as prompts are encoded.

Usage: python3 tools/bench_tokenizers_peer.py [--tokenizer NAME] [--iters N]
Prints MB/s (best and median of N runs) for each tokenizer. Time is process CPU time (the
library runs on one thread here), so a busy machine does not skew the figure; Google Benchmark
also reports CPU time.
"""
import os

# Single-threaded: must be set before tokenizers is imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import json
import statistics
import time

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "testdata", "tokenizer")


def bench_text():
    with open(os.path.join(DIR, "corpus.json"), encoding="utf-8") as f:
        lines = json.load(f)["lines"]
    joined = "".join((l["text"] if "text" in l else bytes.fromhex(l["hex"]).decode("utf-8", "replace")) + "\n"
                     for l in lines)
    out = ""
    while len(out.encode()) < (1 << 20):
        out += joined
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", nargs="*", default=["smollm2", "bpe_llama3", "bpe_qwen2", "spm_bpe",
                                                       "wordpiece_minilm", "unigram"])
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    text = bench_text()
    nbytes = len(text.encode())
    for name in args.tokenizer:
        tok = Tokenizer.from_file(os.path.join(DIR, name + ".tokenizer.json"))
        lines = text.split("\n")
        n_tokens = len(tok.encode(text, add_special_tokens=False).ids)  # warm-up (fills the word cache)
        for mode in ("whole", "per-line"):
            times = []
            for _ in range(args.iters):
                t0 = time.process_time()
                if mode == "whole":
                    tok.encode(text, add_special_tokens=False)
                else:
                    for line in lines:
                        tok.encode(line, add_special_tokens=False)
                times.append(time.process_time() - t0)
            print(f"{name:18s} {mode:8s} {nbytes / 1e6 / min(times):7.2f} MB/s best  "
                  f"{nbytes / 1e6 / statistics.median(times):7.2f} MB/s median  ({nbytes} bytes, {n_tokens} tokens)")


if __name__ == "__main__":
    main()
