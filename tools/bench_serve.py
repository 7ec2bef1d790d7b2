#!/usr/bin/env python3
"""Developer tool: `llmkit serve` against llama.cpp's server (PyPI llama-cpp-python[server]) under the
same load, side by side in one run.

For each engine: start its server on a free loopback port with the same GGUF, threads and context,
warm it up with one request, then for each concurrency level C (default 1, 4, 8, 16) start C
streaming chat clients at once (threads reading the SSE stream with http.client and json, as vLLM's
benchmark_serving does with aiohttp; `--client openai` uses the openai package, whose per-chunk CPU
cost on the servers' own 2 cores is ~10x; prompt i of a fixed set of mixed lengths, greedy,
max_tokens fixed), `--rounds` times. Reported per engine and level:

  agg t/s   completion tokens of all C requests / wall time from the first request to the last end;
  decode t/s  the tokens after each stream's first / the time during which some stream was between
            its first and last content chunk (union of those intervals): aggregate decode throughput
            (prompt processing before the first token is TTFT; later prompts' processing counts);
  steady t/s  the tokens streamed while all C streams were decoding (from the last stream's first
            content chunk to the first stream's last) / that window: continuous batching's decode
            rate with every prompt processed, the figure a server settles at under C streams (each
            stream's chunks in the window x its tokens per chunk);
  TTFT      p50 / p99 over requests: request sent -> first content chunk;
  ITL       p50 / p99 over every gap between consecutive content chunks of one stream.

Tokens are counted by tokenizing each reply with the model's own vocabulary (llama_cpp, vocab
only), so both engines are measured the same way whatever their chunking. The engines alternate
(llmkit level C, llama.cpp level C, ...), so both see the same machine load.

  python3 tools/bench_serve.py --llmkit build/bin/llmkit [--model M.gguf] [--threads 2]
      [--levels 1,4,8,16] [--max-tokens 64] [--rounds 2] [--engines llmkit,llama.cpp]
"""
import argparse
import concurrent.futures as cf
import contextlib
import http.client
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_up(url: str, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not come up")


def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def make_prompts(root: pathlib.Path, n: int):
    words = (root / "testdata/text/kjv_genesis_1-10.txt").read_text(encoding="utf-8").split()
    out = []
    for i in range(n):
        k = 8 + (i * 29) % 120  # 8 .. 127 words: ~12 .. ~170 tokens
        start = (i * 131) % (len(words) - k)
        out.append("Retell this passage in modern English, in detail: " + " ".join(words[start:start + k]))
    return out


class Engine:
    def __init__(self, name, cmd, base):
        self.name, self.cmd, self.base = name, cmd, base
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_up(self.base + "/v1/models", self.proc)
        return self

    def __exit__(self, *a):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def raw_stream(base, model_id, prompt, max_tokens, bias):
    """The reply's content pieces of a streamed chat completion, read with http.client and json (as
    vLLM's benchmark_serving reads them with aiohttp): a few microseconds of CPU per chunk, where the
    openai package's typed chunks take ~10x that on the cores the servers run on."""
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = {"model": model_id, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": max_tokens, "stream": True}
    if bias:
        body["logit_bias"] = bias
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    try:
        for line in resp:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            choices = json.loads(payload).get("choices") or []
            content = choices and (choices[0].get("delta") or {}).get("content")
            if content:
                yield content
    finally:
        conn.close()


def openai_stream(client, model_id, prompt, max_tokens, bias):
    stream = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": prompt}],
                                            temperature=0, max_tokens=max_tokens, stream=True, logit_bias=bias)
    for ch in stream:
        if ch.choices and ch.choices[0].delta and ch.choices[0].delta.content:
            yield ch.choices[0].delta.content


def one_level(client, model_id, prompts, max_tokens, count_tokens, bias=None, base=None):
    def run(p):
        t0 = time.perf_counter()
        first, last, gaps, text, times = None, None, [], [], []
        pieces = (raw_stream(base, model_id, p, max_tokens, bias) if base
                  else openai_stream(client, model_id, p, max_tokens, bias))
        for content in pieces:
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                gaps.append(now - last)
            last = now
            times.append(now)
            text.append(content)
        return t0, (first or time.perf_counter()) - t0, gaps, "".join(text), time.perf_counter(), first, times

    t_start = time.perf_counter()
    with cf.ThreadPoolExecutor(len(prompts)) as ex:
        res = list(ex.map(run, prompts))
    t_end = max(r[4] for r in res)
    counts = [count_tokens(r[3]) for r in res]
    tokens = sum(counts)
    # Decode: the tokens after each stream's first, over the time during which at least one stream
    # was between its first and its last content chunk (the union of those intervals: concurrent
    # streams share it, streams served one after another add up). Prompt processing before the
    # first stream's first token is TTFT; others' prompts processed later fall inside and count.
    spans = sorted((r[5], r[5] + sum(r[2])) for r in res if r[5] is not None)
    union, cur_a, cur_b = 0.0, None, None
    for a_, b_ in spans:
        if cur_b is None or a_ > cur_b:
            if cur_b is not None:
                union += cur_b - cur_a
            cur_a, cur_b = a_, b_
        else:
            cur_b = max(cur_b, b_)
    if cur_b is not None:
        union += cur_b - cur_a
    decode = (tokens - len(spans)) / union if union > 0 else float("nan")
    # Steady: the window in which every stream is between its first and its last chunk.
    steady = float("nan")
    if all(r[6] for r in res):
        w0, w1 = max(r[6][0] for r in res), min(r[6][-1] for r in res)
        if w1 - w0 > 0.1:
            in_window = sum(sum(1 for t in r[6] if w0 < t <= w1) * n / len(r[6]) for r, n in zip(res, counts))
            steady = in_window / (w1 - w0)
    return {"tokens": tokens, "wall": t_end - t_start, "ttft": [r[1] for r in res],
            "itl": [g for r in res for g in r[2]], "decode": decode, "steady": steady}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llmkit", default="build/bin/llmkit")
    home = os.environ.get("LLMKIT_HOME", str(pathlib.Path.home() / ".cache/llmkit"))
    ap.add_argument("--model", default=str(pathlib.Path(home) / "models/SmolLM2-135M-Instruct-Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--levels", default="1,4,8,16")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512, help="positions per sequence (llmkit: per slot)")
    ap.add_argument("--engines", default="llmkit,llama.cpp", help="which servers to run (a quick look: llmkit)")
    ap.add_argument("--client", choices=("raw", "openai"), default="raw",
                    help="the streaming clients: http.client + json (default) or the openai package")
    a = ap.parse_args()
    import openai
    import llama_cpp

    root = pathlib.Path(__file__).resolve().parent.parent
    levels = [int(x) for x in a.levels.split(",")]
    prompts = make_prompts(root, max(levels))
    vocab = llama_cpp.Llama(model_path=a.model, vocab_only=True, verbose=False)

    # Every reply runs to max_tokens: the end-of-text and end-of-turn tokens are banned (logit_bias
    # -100, which both servers take), so both engines generate the same number of tokens.
    ends = {vocab.token_eos()}
    for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        ids = vocab.tokenize(t.encode(), add_bos=False, special=True)
        if len(ids) == 1:
            ends.add(ids[0])
    bias = {str(t): -100 for t in ends if t >= 0}

    def count_tokens(text):
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    p1, p2 = free_port(), free_port()
    engines = [
        Engine("llmkit", [a.llmkit, "serve", "-m", a.model, "--port", str(p1), "-t", str(a.threads), "-c", str(a.ctx),
                          "-P", str(max(levels))], f"http://127.0.0.1:{p1}"),
        Engine("llama.cpp", [sys.executable, "-m", "llama_cpp.server", "--model", a.model, "--port", str(p2),
                             "--n_threads", str(a.threads), "--n_threads_batch", str(a.threads),
                             "--n_ctx", str(a.ctx * max(levels)), "--n_batch", "512",
                             "--interrupt_requests", "False"], f"http://127.0.0.1:{p2}"),
    ]
    wanted = a.engines.split(",")
    engines = [e for e in engines if e.name in wanted]
    results = {e.name: {c: [] for c in levels} for e in engines}
    t0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load0 = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        running = [stack.enter_context(e) for e in engines]
        clients = {}
        for e in running:
            c = openai.OpenAI(base_url=e.base + "/v1", api_key="none", max_retries=0, timeout=600)
            mid = c.models.list().data[0].id
            one_level(c, mid, prompts[:1], 8, count_tokens)  # warm-up
            clients[e.name] = (c, mid)
        for r in range(a.rounds):
            for c in levels:
                for e in running:
                    cl, mid = clients[e.name]
                    # Unique per round and level, so no engine serves a prompt from its prefix cache
                    # beyond the chat template's shared system prompt.
                    ps = [f"(request {r}.{c}.{i}) {p}" for i, p in enumerate(prompts[:c])]
                    m = one_level(cl, mid, ps, a.max_tokens, count_tokens, bias,
                                  base=e.base if a.client == "raw" else None)
                    results[e.name][c].append(m)
                    print(f"round {r + 1} {e.name:9s} C={c:2d}: {m['tokens'] / m['wall']:7.1f} t/s "
                          f"({m['tokens']} tokens in {m['wall']:.2f} s; decode {m['decode']:.1f} t/s; "
                          f"steady {m['steady']:.1f} t/s)",
                          file=sys.stderr)
    t1 = time.strftime("%H:%M", time.gmtime())
    print(f"{t0}-{t1} UTC; {os.cpu_count()} CPUs; load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
          f"llama-cpp-python {llama_cpp.__version__}; {pathlib.Path(a.model).name}, {a.threads} threads, "
          f"max_tokens {a.max_tokens}, greedy, {a.rounds} rounds, {a.client} clients\n")
    names = [e.name for e in engines]
    cols = ("agg t/s", "decode t/s", "steady t/s")
    head = "| streams |"
    for col in cols:
        head += "".join(f" {n} {col} |" for n in names) + (" ratio |" if len(names) == 2 else "")
    head += "".join(f" {n} TTFT p50 / p99 ms |" for n in names) + "".join(f" {n} ITL p50 / p99 ms |" for n in names)
    print(head)
    print("|" + "---|" * head.count(" |"))
    base = {}
    for c in levels:
        row = {}
        for name in names:
            ms = results[name][c]
            ttft = [x for m in ms for x in m["ttft"]]
            itl = [x for m in ms for x in m["itl"]]
            row[name] = {"agg t/s": statistics.mean(m["tokens"] / m["wall"] for m in ms),
                         "decode t/s": statistics.mean(m["decode"] for m in ms),
                         "steady t/s": statistics.mean(m["steady"] for m in ms),
                         "ttft": (pct(ttft, 50) * 1e3, pct(ttft, 99) * 1e3), "itl": (pct(itl, 50) * 1e3, pct(itl, 99) * 1e3)}
        if c == levels[0]:
            base = {col: row[names[0]][col] for col in cols}
        line = f"| {c} |"
        for col in cols:
            for k, name in enumerate(names):
                v = row[name][col]
                if v != v:  # nan: the streams were never all decoding at once (served one after another)
                    line += " - |"
                else:
                    line += f" {v:.1f} ({v / base[col]:.2f}x of {levels[0]}) |" if k == 0 else f" {v:.1f} |"
            if len(names) == 2:
                r = row[names[0]][col] / row[names[1]][col]
                line += " - |" if r != r else f" **{r:.2f}** |"
        line += "".join(f" {row[n]['ttft'][0]:.0f} / {row[n]['ttft'][1]:.0f} |" for n in names)
        line += "".join(f" {row[n]['itl'][0]:.1f} / {row[n]['itl'][1]:.1f} |" for n in names)
        print(line)

if __name__ == "__main__":
    main()
