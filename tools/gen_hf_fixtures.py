#!/usr/bin/env python3
"""Developer tool (needs PyPI transformers, torch, tokenizers; CI never runs it).

Writes small committed fixtures for tests/test_model_config.cc and tests/test_convert.cc:
  testdata/hf/configs/<name>.json  config.json of every architecture family, made by the real
                                   transformers config classes with tiny sizes (so every key and
                                   default is what transformers itself writes);
  testdata/hf/tiny-llama/          a tiny random LlamaForCausalLM saved by save_pretrained
                                   (bf16 safetensors) with a tiny byte-level BPE tokenizer and a
                                   chat template: a folder written by the reference implementation.
With --check-folder DIR it loads DIR with transformers (a folder written by `llmkit convert`) and
prints the first logits, so the converter's output is checked against the reference loader.
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "hf"


def configs() -> None:
    import transformers as tf
    small = dict(vocab_size=96)
    made = {
        "llama3": tf.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=256, rope_theta=500000.0,
                                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0, "original_max_position_embeddings": 128},
                                 tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, **small),
        "smollm": tf.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=4, tie_word_embeddings=True, rms_norm_eps=1e-5, **small),
        "mistral": tf.MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, sliding_window=32, **small),
        "mixtral": tf.MixtralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, **small),
        "qwen2": tf.Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, **small),
        "gemma": tf.GemmaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=32, **small),
        "phi3": tf.Phi3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=4, pad_token_id=0, bos_token_id=1, eos_token_id=2, **small),
        "gpt2": tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=95, eos_token_id=95, **small),
        "opt": tf.OPTConfig(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                            word_embed_proj_dim=64, max_position_embeddings=128, pad_token_id=1, **small),
        "bloom": tf.BloomConfig(hidden_size=64, n_layer=2, n_head=4, **small),
        "gpt_neox": tf.GPTNeoXConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                                     rotary_pct=0.25, max_position_embeddings=128, **small),
        "bert": tf.BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=128, **small),
        "t5": tf.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=3, num_heads=4,
                          feed_forward_proj="gated-gelu", **small),
    }
    arch = {"llama3": "LlamaForCausalLM", "smollm": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
            "mixtral": "MixtralForCausalLM", "qwen2": "Qwen2ForCausalLM", "gemma": "GemmaForCausalLM",
            "phi3": "Phi3ForCausalLM", "gpt2": "GPT2LMHeadModel", "opt": "OPTForCausalLM",
            "bloom": "BloomForCausalLM", "gpt_neox": "GPTNeoXForCausalLM", "bert": "BertModel",
            "t5": "T5ForConditionalGeneration"}
    d = OUT / "configs"
    d.mkdir(parents=True, exist_ok=True)
    for name, cfg in made.items():
        cfg.architectures = [arch[name]]
        (d / f"{name}.json").write_text(cfg.to_json_string(use_diff=False))
        print("wrote", d / f"{name}.json")


def tiny_llama() -> None:
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=300, max_position_embeddings=64, bos_token_id=0,
                         eos_token_id=1, tie_word_embeddings=False)
    model = tf.LlamaForCausalLM(cfg).to(torch.bfloat16)
    out = OUT / "tiny-llama"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = ["the quick brown fox jumps over the lazy dog", "hello world, hello llmkit", "a tiny tokenizer for tests"]
    tok.train_from_iterator(text * 20, trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant: {% endif %}"}, indent=2) + "\n")
    print("wrote", out)


def check_folder(path: pathlib.Path) -> int:
    import torch
    import transformers as tf
    model = tf.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    ids = torch.tensor([[0, 5, 17, 42]])
    print(model(ids).logits[0, -1, :8])
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-folder", type=pathlib.Path)
    a = ap.parse_args()
    if a.check_folder:
        sys.exit(check_folder(a.check_folder))
    configs()
    tiny_llama()
