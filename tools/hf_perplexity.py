#!/usr/bin/env python3
"""Developer tool: Hugging Face transformers' perplexity on a GGUF model, the counterpart of
tools/llamacpp_perplexity.py. transformers loads the GGUF itself (from_pretrained(dir, gguf_file=...)
dequantizes every tensor to float32 with the gguf package) and its tokenizer the same way; the
chunking is llama.cpp's perplexity tool's and `llmkit perplexity`'s (see include/llmkit/eval.h):
tokenize once (BOS if the GGUF says tokenizer.ggml.add_bos_token), floor(n/n_ctx) chunks, each
evaluated from an empty context with its first token set to BOS when BOS is added, score positions
n_ctx/2 .. n_ctx-2 predicting the next token. Needs PyPI torch, transformers, gguf, accelerate
(transformers requires it for GGUF loading); CI never runs it.

Tokens: the text is tokenized with transformers' GGUF tokenizer without special tokens (the text
must not contain a special token's text: llama.cpp tokenizes with special=False) and BOS added by
the GGUF's rule. When llama-cpp-python is installed the ids are compared with llama.cpp's
(vocab-only load) and the script stops if they differ. With --fixture the evaluated ids are written
too, and tests/test_perplexity.cc checks that llmkit's tokenizer gives the same ones.

  python3 tools/hf_perplexity.py MODEL.gguf TEXT.txt [n_ctx] [max_chunks] [threads] [--fixture OUT.json]
"""
import json
import math
import os
import sys
import time

import gguf
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

args = list(sys.argv[1:])
fixture = None
if "--fixture" in args:
    i = args.index("--fixture")
    fixture = args[i + 1]
    del args[i:i + 2]
model_path, text_path = args[0], args[1]
n_ctx = int(args[2]) if len(args) > 2 else 512
max_chunks = int(args[3]) if len(args) > 3 else 0
threads = int(args[4]) if len(args) > 4 else 1
torch.set_num_threads(threads)

model_dir, model_file = os.path.split(os.path.abspath(model_path))
reader = gguf.GGUFReader(model_path)
field = reader.fields.get("tokenizer.ggml.add_bos_token")
add_bos = bool(field.contents()) if field is not None else False
bos_field = reader.fields.get("tokenizer.ggml.bos_token_id")
bos_id = int(bos_field.contents()) if bos_field is not None else None
if add_bos and bos_id is None:
    sys.exit("the GGUF adds BOS but declares no tokenizer.ggml.bos_token_id")
del reader

tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
raw = open(text_path, "rb").read()
text = raw.decode("utf-8", errors="replace")
for t in tok.all_special_tokens:
    if t and t in text:
        sys.exit(f"the text contains the special token {t!r}; llama.cpp would not parse it as one")
tokens = ([bos_id] if add_bos else []) + tok(text, add_special_tokens=False)["input_ids"]

try:
    from llama_cpp import Llama
except ImportError:
    print("llama-cpp-python not installed: token ids not cross-checked with llama.cpp", file=sys.stderr)
else:
    vocab = Llama(model_path=model_path, vocab_only=True, verbose=False)
    ref = list(vocab.tokenize(raw, add_bos=add_bos, special=False))
    if ref != tokens:
        first = next((i for i, (a, b) in enumerate(zip(ref, tokens)) if a != b), min(len(ref), len(tokens)))
        sys.exit(f"transformers' tokens differ from llama.cpp's at index {first} "
                 f"({len(tokens)} vs {len(ref)} tokens)")
    print(f"token ids identical to llama.cpp's ({len(tokens)})", file=sys.stderr)
    del vocab

n_chunks = len(tokens) // n_ctx
if max_chunks:
    n_chunks = min(n_chunks, max_chunks)
if n_chunks < 1:
    sys.exit(f"the text has {len(tokens)} tokens, fewer than one chunk of {n_ctx}")

model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file, dtype=torch.float32,
                                             attn_implementation="eager")
model.eval()
nll, scored, chunk_ppl = 0.0, 0, []
t0 = time.time()
with torch.no_grad():
    for c in range(n_chunks):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos_id
        logits = model(torch.tensor([chunk])).logits[0].double()  # [n_ctx, n_vocab]
        first = n_ctx // 2
        logp = torch.log_softmax(logits[first:n_ctx - 1], dim=-1)
        targets = torch.tensor(tokens[c * n_ctx + first + 1:(c + 1) * n_ctx])
        nll -= logp.gather(1, targets[:, None]).sum().item()
        scored += n_ctx - 1 - first
        chunk_ppl.append(math.exp(nll / scored))
        print(f"chunk {c + 1}/{n_chunks}: ppl {chunk_ppl[-1]:.4f}", file=sys.stderr)
dt = time.time() - t0
ppl = math.exp(nll / scored)
print(f"transformers perplexity {ppl:.4f}  ({n_chunks} chunks of {n_ctx}, {scored} scored of {len(tokens)} tokens, "
      f"add_bos={add_bos}, running per chunk {', '.join(f'{p:.4f}' for p in chunk_ppl)}, {dt:.1f} s)")

if fixture:
    out = {
        "model": model_file,
        "text": os.path.basename(text_path),
        "engine": f"transformers {transformers.__version__}, torch {torch.__version__}, GGUF dequantized to float32",
        "n_ctx": n_ctx,
        "add_bos": add_bos,
        "n_tokens": len(tokens),
        "n_chunks": n_chunks,
        "n_scored": scored,
        "perplexity": round(ppl, 6),
        "chunk_ppl": [round(p, 6) for p in chunk_ppl],  # running perplexity after each chunk
        "tokens": tokens[:n_chunks * n_ctx],  # the ids evaluated (before the BOS substitution)
    }
    with open(fixture, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"wrote {fixture}", file=sys.stderr)
