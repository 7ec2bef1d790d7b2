#!/usr/bin/env python3
"""Developer tool (needs PyPI gguf, numpy, safetensors): writes the small seed files of
fuzz/corpus/gguf and fuzz/corpus/safetensors (each under 4 KB, so mutations stay fast)."""
import pathlib

import numpy as np
from gguf import GGUFWriter
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def gguf_seeds() -> None:
    d = ROOT / "gguf"
    d.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(d / "tiny_llama.gguf"), "llama")
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_context_length(16)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "c", "ab"])
    w.add_token_types([1, 1, 1, 1])
    w.add_token_merges(["a b"])
    w.add_chat_template("{{ messages }}")
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (4, 8), "blk.0.attn_norm.weight": (8,), "blk.0.attn_q.weight": (8, 8),
              "blk.0.attn_k.weight": (4, 8), "blk.0.attn_v.weight": (4, 8), "blk.0.attn_output.weight": (8, 8),
              "blk.0.ffn_gate.weight": (16, 8), "blk.0.ffn_up.weight": (16, 8), "blk.0.ffn_down.weight": (8, 16),
              "output_norm.weight": (8,)}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    w = GGUFWriter(str(d / "kv_only.gguf"), "gpt2")
    w.add_uint64("x.u64", 1 << 40)
    w.add_array("x.arr", [1, 2, 3])
    w.add_string("x.str", "héllo")
    w.add_bool("x.bool", True)
    w.add_float64("x.f64", 0.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def safetensors_seeds() -> None:
    d = ROOT / "safetensors"
    d.mkdir(parents=True, exist_ok=True)
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 0], dtype=np.bool_),
               "c": np.zeros((0, 4), dtype=np.float16), "d": np.array(3, dtype=np.int64)},
              str(d / "mixed.safetensors"), metadata={"format": "pt", "k": "v"})
    save_file({}, str(d / "empty.safetensors"))


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
