#!/usr/bin/env python3
"""Load test of `llmkit serve` on loopback with the official openai client: 16 concurrent streaming
chat clients with mixed prompt lengths (a few tokens to ~300, cut from a public-domain text), greedy
sampling. Every request must succeed, stream valid chunks, and produce exactly the text that the
same request gives when it runs alone, one at a time, afterwards; the server's running batch and
KV usage must be back to zero at the end. Bounded: 16 requests x 32 tokens, twice.

Exit 77 (skipped) when the openai package or the default model is missing.

usage: test_serve_load.py PATH/TO/llmkit"""
import concurrent.futures as cf
import pathlib
import sys
import time
import urllib.request

from serve_testlib import SKIP, default_model, serve
N_CLIENTS = 16
MAX_TOKENS = 32


def prompts(root: pathlib.Path):
    words = (root / "testdata/text/kjv_genesis_1-10.txt").read_text(encoding="utf-8").split()
    out = []
    for i in range(N_CLIENTS):
        n = 3 + (i * 37) % 230  # 3 .. 230 words: ~5 .. ~300 tokens
        start = (i * 101) % (len(words) - n)
        text = " ".join(words[start:start + n])
        ask = ["Summarize:", "Continue this text:", "What is this about?", "Give a title for:"][i % 4]
        out.append(f"{ask} {text}")
    out[3] = "Hi"
    out[7] = "你好！请用中文回答：天空是什么颜色？🌍"
    return out


def metric(base: str, name: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def main(llmkit: str) -> int:
    try:
        import openai
    except ImportError:
        print("skipped: the openai package is not installed (pip install openai)")
        return SKIP
    model = default_model()
    if model is None:
        return SKIP
    root = pathlib.Path(__file__).resolve().parent.parent
    ps = prompts(root)

    with serve(llmkit, model, "-c", "512", "-P", str(N_CLIENTS)) as (base, _):
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=300)
        name = client.models.list().data[0].id

        def run(p: str, stream: bool):
            t0 = time.perf_counter()
            msgs = [{"role": "user", "content": p}]
            if not stream:
                r = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=MAX_TOKENS)
                return r.choices[0].message.content, r.choices[0].finish_reason, 1, time.perf_counter() - t0
            pieces, finish, chunks = [], None, 0
            for ch in client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=MAX_TOKENS,
                                                     stream=True):
                chunks += 1
                for c in ch.choices:
                    if c.delta.content:
                        pieces.append(c.delta.content)
                    if c.finish_reason:
                        finish = c.finish_reason
            return "".join(pieces), finish, chunks, time.perf_counter() - t0

        # One streamed request on this thread first. The openai package builds its pydantic chunk
        # types lazily on first use, and pydantic 2.13 does not guard that against threads: 16
        # clients decoding their first chunk at once can fail inside the client with
        # "BaseModel cannot be instantiated directly" (seen in CI; reproduced with 16 threads
        # calling openai._models.construct_type at once, never once the types were built).
        run("Hello", True)

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(N_CLIENTS) as ex:
            concurrent = list(ex.map(lambda p: run(p, True), ps))
        t_conc = time.perf_counter() - t0
        peak_note = f"{N_CLIENTS} concurrent streams in {t_conc:.1f} s"

        t0 = time.perf_counter()
        alone = [run(p, True) for p in ps]
        t_seq = time.perf_counter() - t0

        bad = []
        for i, (c, a) in enumerate(zip(concurrent, alone)):
            assert c[1] in ("stop", "length"), (i, c)
            assert c[2] > 1, f"request {i} was not streamed ({c[2]} chunks)"
            if c[0] != a[0]:
                bad.append(f"request {i}: concurrent {c[0]!r} != alone {a[0]!r}")
        assert not bad, "\n".join(bad)
        deadline = time.time() + 10
        while metric(base, "llmkit_running_sequences") != 0 and time.time() < deadline:
            time.sleep(0.05)
        assert metric(base, "llmkit_running_sequences") == 0
        assert metric(base, "llmkit_kv_cache_positions_used") == 0
        assert metric(base, "llmkit_kv_blocks_used") == 0  # every page back (free or cached)
        err = [l for l in urllib.request.urlopen(base + "/metrics").read().decode().splitlines()
               if l.startswith('llmkit_requests_total{reason="error"}')]
        assert err and float(err[0].split()[1]) == 0, err
        # The chat template's system prompt (a whole KV page) is computed once and shared; the
        # one-at-a-time pass finds every prompt's pages cached by the concurrent one.
        hits = metric(base, "llmkit_prefix_cache_hit_tokens_total")
        assert hits >= 16 * (2 * N_CLIENTS - 1), hits
        n_tok = sum(len(c[0]) for c in concurrent)
        print(f"ok: {peak_note}, one at a time {t_seq:.1f} s; all {N_CLIENTS} outputs identical "
              f"({n_tok} characters); {hits:.0f} prompt tokens from shared KV pages; KV back to 0")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/bin/llmkit"))
