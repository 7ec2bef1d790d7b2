#!/usr/bin/env python3
"""Developer tool: llama.cpp's perplexity on a text, chunked exactly as llama.cpp's perplexity tool
(and `llmkit perplexity`): tokenize once (BOS if the model adds it), floor(n/n_ctx) chunks, each
evaluated from an empty context with its first token set to BOS when the model adds BOS, score
positions n_ctx/2 .. n_ctx-2 predicting the next token. Needs PyPI llama-cpp-python.

  python3 tools/llamacpp_perplexity.py MODEL.gguf TEXT.txt [n_ctx] [max_chunks] [threads]
"""
import math
import sys
import time

import numpy as np
from llama_cpp import Llama

model, path = sys.argv[1], sys.argv[2]
n_ctx = int(sys.argv[3]) if len(sys.argv) > 3 else 512
max_chunks = int(sys.argv[4]) if len(sys.argv) > 4 else 0
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
m = Llama(model_path=model, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, verbose=False, n_threads=threads,
          n_threads_batch=threads)
add_bos = m._model.add_bos_token() if hasattr(m._model, "add_bos_token") else False
text = open(path, "rb").read()
tokens = m.tokenize(text, add_bos=add_bos, special=False)
n_chunks = len(tokens) // n_ctx
if max_chunks:
    n_chunks = min(n_chunks, max_chunks)
nll, scored = 0.0, 0
t0 = time.time()
for c in range(n_chunks):
    chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
    if add_bos:
        chunk[0] = m.token_bos()
    m.reset()
    m.eval(chunk)
    logits = np.array(m.scores[:n_ctx], dtype=np.float64)
    for j in range(n_ctx // 2, n_ctx - 1):
        row = logits[j]
        mx = row.max()
        lse = mx + math.log(np.exp(row - mx).sum())
        nll += lse - row[tokens[c * n_ctx + j + 1]]
        scored += 1
    print(f"chunk {c + 1}/{n_chunks}: ppl {math.exp(nll / scored):.4f}", file=sys.stderr)
dt = time.time() - t0
print(f"llama.cpp perplexity {math.exp(nll / scored):.4f}  ({n_chunks} chunks of {n_ctx}, {scored} scored of "
      f"{len(tokens)} tokens, add_bos={add_bos}, {dt:.1f} s)")
