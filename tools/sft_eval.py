#!/usr/bin/env python3
"""Asks a model held-out questions through `llmkit chat` (greedy, one fresh chat per question) and
counts the replies in a target format: those starting with --prefix and ending with --suffix.
Used to show that SFT changed the answers as intended (data/sft/README.md):

  python3 tools/sft_eval.py --llmkit build/bin/llmkit -m MODEL --questions data/sft/pirate-eval.txt \\
      [--prefix Ahoy! --suffix Arr!] [--show]
"""
import argparse
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llmkit", default="build/bin/llmkit")
    ap.add_argument("-m", "--model", default=None, help="model (default: the installed SmolLM2)")
    ap.add_argument("--questions", required=True, help="one question per line")
    ap.add_argument("--prefix", default="Ahoy!")
    ap.add_argument("--suffix", default="Arr!")
    ap.add_argument("-n", type=int, default=80, help="most tokens per reply")
    ap.add_argument("--show", action="store_true", help="print every question and reply")
    a = ap.parse_args()
    questions = [q.strip() for q in open(a.questions, encoding="utf-8") if q.strip()]
    hits = 0
    for q in questions:
        cmd = [a.llmkit, "chat", "--temp", "0", "-n", str(a.n)] + (["-m", a.model] if a.model else [])
        p = subprocess.run(cmd, input=q + "\n", capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            sys.exit(f"llmkit chat failed ({p.returncode}): {p.stderr[-1000:]}")
        reply = p.stdout.strip()
        ok = reply.startswith(a.prefix) and reply.endswith(a.suffix)
        hits += ok
        if a.show:
            print(f"{'+' if ok else '-'} Q: {q}\n  A: {reply}")
    print(f"{hits}/{len(questions)} replies start with {a.prefix!r} and end with {a.suffix!r}")


if __name__ == "__main__":
    main()
