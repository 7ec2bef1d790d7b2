#!/usr/bin/env python3
"""Developer tool: llmkit against llama.cpp on the same GGUF files, side by side in one run.

For every model and thread count, the two engines take turns (llmkit, llama.cpp, llmkit, ...,
`--rounds` times), each turn in a fresh process that loads the model, runs one untimed warm-up of
each test and then `--reps` timed repetitions, so both see the same machine load and neither is
favoured by running first. Both engines run the same tests on the same token ids:

  pp<P>  one forward of P prompt tokens from an empty KV cache, logits of the last position
         (llama.cpp: one llama_decode with n_batch = n_ubatch = P, so the prompt is one batch);
  tg<N>  N single-token decode steps from an empty KV cache at positions 0..N-1, logits each step.

Token ids: t_i = splitmix64(seed + i) mod n_vocab (llmkit/bench.h), computed here for llama.cpp.
Both contexts hold P + N positions. llama.cpp runs with its defaults otherwise (F16 KV cache,
flash attention "auto", mmap), as llama-bench does; llmkit keeps its KV cache in F32.

Prints a markdown table: tokens/s mean ± sample stddev over all rounds x reps, and the ratio of the
means llmkit / llama.cpp (> 1: llmkit is faster); then a memory table: llmkit's peak RSS (its own
getrusage, `bench --json`) against the file size + its KV cache, and llama.cpp's peak RSS above the
worker's RSS before loading the model (the interpreter and libllama are not counted). Needs PyPI llama-cpp-python (its libllama is the
peer) and a built llmkit binary.

  python3 tools/bench_vs_llamacpp.py --llmkit build/bin/llmkit [--models A.gguf B.gguf ...] \
      [--threads 1,2] [-p 512] [-n 128] [--rounds 3] [--reps 3]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

MASK = (1 << 64) - 1
DEFAULT_MODELS = [os.path.expanduser(f"~/.cache/llmkit/models/SmolLM2-135M-Instruct-{t}.gguf")
                  for t in ("Q4_1", "Q8_0", "F16")]


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def bench_tokens(seed, n, n_vocab):
    return [splitmix64(seed + i) % n_vocab for i in range(n)]


# ---- llama.cpp side: runs in its own process (`--worker`), prints one JSON line -----------------

def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def llamacpp_worker(a):
    import llama_cpp as L
    L.llama_backend_init()
    rss0 = rss_kib("VmRSS")  # the interpreter and libllama, before the model
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp cannot load {a.model}")
    cp = L.llama_context_default_params()
    cp.n_ctx = a.p + a.n
    cp.n_batch = max(a.p, 1)
    cp.n_ubatch = max(a.p, 1)
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    mem = L.llama_get_memory(ctx)
    ids = bench_tokens(a.seed, max(a.p, a.n), n_vocab)
    batch = L.llama_batch_init(max(a.p, 1), 0, 1)

    def fill(tokens, pos0):
        batch.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            batch.token[i] = t
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(tokens) - 1

    def pp():
        L.llama_memory_clear(mem, True)
        fill(ids[:a.p], 0)
        t0 = time.perf_counter()
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        L.llama_synchronize(ctx)
        return a.p / (time.perf_counter() - t0)

    def tg():
        L.llama_memory_clear(mem, True)
        t0 = time.perf_counter()
        for i in range(a.n):
            fill([ids[i]], i)
            if L.llama_decode(ctx, batch) != 0:
                raise SystemExit("llama_decode failed")
        L.llama_synchronize(ctx)
        return a.n / (time.perf_counter() - t0)

    rows = []
    for name, n, fn in (("pp", a.p, pp), ("tg", a.n, tg)):
        if n == 0:
            continue
        fn()  # warm-up
        rows.append({"test": f"{name}{n}", "samples": [fn() for _ in range(a.reps)]})
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    print(json.dumps({"rows": rows, "peak_rss_above_start": (rss_kib("VmHWM") - rss0) * 1024}))


def run_llamacpp(a, model, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model, "--worker-threads", str(threads),
           "-p", str(a.p), "-n", str(a.n), "--reps", str(a.reps), "--seed", str(a.seed)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return {r["test"]: r["samples"] for r in out["rows"]}, out["peak_rss_above_start"]


def run_llmkit(a, model, threads):
    cmd = [a.llmkit, "bench", "-m", model, "-p", str(a.p), "-n", str(a.n), "-t", str(threads), "-r", str(a.reps),
           "--json"]
    j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    last = j["rows"][-1]
    mem = (last["file_bytes"], last["kv_cache_bytes"], last["peak_rss_bytes"])
    return {r["test"]: r["samples"] for r in j["rows"]}, j["rows"][0]["model"], mem


def fmt(xs):
    m = statistics.mean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m, f"{m:.1f} ± {sd:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llmkit", default="build/bin/llmkit", help="the llmkit binary")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="alternations llmkit/llama.cpp per row")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per engine per round")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        a.threads = a.worker_threads
        return llamacpp_worker(a)

    import llama_cpp
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    threads = [int(t) for t in a.threads.split(",")]
    lines = ["| model | file | threads | test | llmkit t/s | llama.cpp t/s | ratio |", "|---|---|---|---|---|---|---|"]
    mem_lines = ["| file | file MB | llmkit KV cache MB (F32) | llmkit peak RSS MB | / (file + KV) | "
                 "llama.cpp peak RSS above the interpreter MB |", "|---|---|---|---|---|---|"]
    for model in a.models:
        if not os.path.exists(model):
            print(f"skipping {model}: not found", file=sys.stderr)
            continue
        for t in threads:
            ours, theirs, desc = {}, {}, ""
            peak_ours, peak_theirs, file_kv = 0, 0, (0, 0)
            for _ in range(a.rounds):
                o, desc, (fb, kvb, rss) = run_llmkit(a, model, t)
                peak_ours, file_kv = max(peak_ours, rss), (fb, kvb)
                for k, v in o.items():
                    ours.setdefault(k, []).extend(v)
                th, rss_t = run_llamacpp(a, model, t)
                peak_theirs = max(peak_theirs, rss_t)
                for k, v in th.items():
                    theirs.setdefault(k, []).extend(v)
            mb = 1e6
            mem_lines.append(f"| {os.path.basename(model)} ({t} thr) | {file_kv[0] / mb:.1f} | {file_kv[1] / mb:.1f} | "
                             f"{peak_ours / mb:.1f} | **{peak_ours / (file_kv[0] + file_kv[1]):.3f}** | "
                             f"{peak_theirs / mb:.1f} |")
            print(mem_lines[-1], file=sys.stderr, flush=True)
            for test in ours:
                mo, so = fmt(ours[test])
                mt, st = fmt(theirs[test])
                row = f"| {desc} | {os.path.basename(model)} | {t} | {test} | {so} | {st} | **{mo / mt:.2f}** |"
                lines.append(row)
                print(row, file=sys.stderr, flush=True)
    ended = datetime.datetime.now(datetime.timezone.utc)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC; {cpu}, {os.cpu_count()} CPUs; load average "
          f"{load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; llama-cpp-python {llama_cpp.__version__}; "
          f"{platform.python_version()}; p={a.p} n={a.n}, {a.rounds} rounds x {a.reps} reps per engine")
    print()
    print("\n".join(lines))
    print()
    print("\n".join(mem_lines))


if __name__ == "__main__":
    main()
