#!/usr/bin/env python3
"""Developer tool: records llama.cpp's logits for the default model (SmolLM2-135M-Instruct Q4_1) on
a fixed token sequence, as the reference for tests/test_transformer.cc. Needs PyPI llama-cpp-python.

  python3 tools/gen_llamacpp_fixture.py ~/.cache/llmkit/models/SmolLM2-135M-Instruct-Q4_1.gguf
"""
import json
import sys

import numpy as np
from llama_cpp import Llama

path = sys.argv[1]
m = Llama(model_path=path, n_ctx=512, logits_all=True, verbose=False, n_threads=2)
text = b"The capital of France is Paris. The capital of Germany is"
toks = m.tokenize(text, add_bos=False)
m.eval(toks)
lg = np.array(m.scores[: len(toks)], dtype=np.float64)
out = {
    "model": "SmolLM2-135M-Instruct-Q4_1.gguf",
    "text": text.decode(),
    "tokens": toks,
    "argmax": lg.argmax(-1).tolist(),
    # all logits of the first, a middle and the last position, rounded: 3 x 49152 numbers
    "positions": [0, len(toks) // 2, len(toks) - 1],
    "logits": [[round(float(v), 4) for v in lg[p]] for p in (0, len(toks) // 2, len(toks) - 1)],
}
json.dump(out, open("testdata/models/smollm2_q4_1_llamacpp_logits.json", "w"))
print("wrote", len(toks), "tokens; last argmax", out["argmax"][-1])
