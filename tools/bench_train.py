#!/usr/bin/env python3
"""Developer tool: training tokens/s of `llmkit train` against PyTorch (transformers) on the CPU,
same model, precision (F32, or BF16 compute with F32 master weights: llmkit --precision bf16 against
torch.autocast("cpu", torch.bfloat16)), threads, batch and sequence length, side by side in one run.

The model is a Hugging Face folder (e.g. SmolLM2 converted with `llmkit convert MODEL.gguf DIR
--type f32`); llmkit trains on a prepared data folder (`llmkit data prepare`), PyTorch on random ids
of the same shape (the cost does not depend on the ids). Each engine runs --steps optimizer steps
(AdamW, full fine-tuning, every parameter trainable); the first step is a warm-up and not timed.
Prints tokens/s (median over the timed steps) and the ratio llmkit / PyTorch, and both peak RSS.

  python3 tools/bench_train.py --llmkit build/bin/llmkit --model /tmp/smol_hf --data /tmp/kjv \\
      [--batch 4] [--seq-len 256] [--steps 5] [--threads 2] [--precision bf16] [--rounds 3]
"""
import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run_llmkit(a):
    out = tempfile.mkdtemp(prefix="bench_train_")
    cmd = [a.llmkit, "train", "--model", a.model, "--data", a.data, "--out", out,
           "--seq-len", str(a.seq_len), "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", "1",
           "--lr", "1e-5", "--eval-every", "0", "--save-every", "0", "--export-model", "false",
           "--precision", a.precision]
    env = dict(os.environ, LLMKIT_THREADS=str(a.threads))
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(p.stderr[-2000:])
    rates = [float(x) for x in re.findall(r"([0-9.]+) tok/s", p.stderr)]
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    shutil.rmtree(out, ignore_errors=True)
    return statistics.median(rates[1:]) if len(rates) > 1 else rates[0], rss, time.time() - t0


def run_torch(a):
    code = f"""
import os, time, statistics, resource, torch
torch.set_num_threads({a.threads})
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({a.model!r}, torch_dtype=torch.float32, attn_implementation="eager")
m.train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
g = torch.Generator().manual_seed(0)
rates = []
for s in range({a.steps}):
    ids = torch.randint(0, m.config.vocab_size, ({a.batch}, {a.seq_len} + 1), generator=g)
    t0 = time.perf_counter()
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled={a.precision == "bf16"}):
        out = m(input_ids=ids[:, :-1], labels=ids[:, :-1])
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    rates.append({a.batch} * {a.seq_len} / (time.perf_counter() - t0))
print(statistics.median(rates[1:]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr[-2000:])
    r, rss = p.stdout.split()[-2:]
    return float(r), float(rss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llmkit", default="build/bin/llmkit")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate the two engines this many times (fresh processes); medians and their ratio")
    a = ap.parse_args()
    import torch
    import transformers
    t0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    lks, pts = [], []
    lk_rss = pt_rss = 0.0
    for _ in range(a.rounds):
        lk, r1, _ = run_llmkit(a)
        pt, r2 = run_torch(a)
        lks.append(lk)
        pts.append(pt)
        lk_rss, pt_rss = max(lk_rss, r1), max(pt_rss, r2)
    print(f"{t0} UTC; torch {torch.__version__}, transformers {transformers.__version__}; {a.model}, {a.precision.upper()}, "
          f"batch {a.batch} x {a.seq_len}, {a.threads} threads, median of steps 2..{a.steps}"
          f"{f', {a.rounds} alternating rounds' if a.rounds > 1 else ''}; load {os.getloadavg()[0]:.2f}\n")
    print("| engine | tokens/s | peak RSS MB |\n|---|---|---|")
    each = lambda v: f" (rounds: {', '.join(f'{x:.1f}' for x in v)})" if len(v) > 1 else ""
    lk, pt = statistics.median(lks), statistics.median(pts)
    print(f"| llmkit train | {lk:.1f}{each(lks)} | {lk_rss:.0f} |")
    print(f"| PyTorch (transformers, eager) | {pt:.1f}{each(pts)} | {pt_rss:.0f} |")
    if len(lks) > 1:
        print(f"\nper-round ratios: {', '.join(f'{x / y:.2f}' for x, y in zip(lks, pts))}")
    print(f"\nratio llmkit / PyTorch: **{lk / pt:.2f}**")


if __name__ == "__main__":
    main()
