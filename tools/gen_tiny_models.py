#!/usr/bin/env python3
"""Developer tool (needs PyPI torch and transformers; CI never runs it).

Writes tiny RANDOM models of every architecture family, built and run by the real transformers
classes, as committed numeric references for the C++ engine:
  testdata/tiny/<name>/config.json, model.safetensors (F32), generation_config.json
                                   exactly as `save_pretrained(safe_serialization=True)` writes them
                                   (no tokenizer: the tests feed token ids);
  testdata/tiny/<name>/reference.safetensors
                                   input_ids [2,8] (one batch, no padding, no attention mask) and
                                   logits [2,8,V] (bert: last_hidden_state [2,8,D]; t5: also
                                   decoder_input_ids [2,6] and logits [2,6,V]); greedy_prompt [1,5],
                                   greedy_ids [1,5+8] (t5: the decoder ids, start token included)
                                   and greedy_margin [1], the smallest top1-top2 logit gap of the
                                   greedy steps (>= 1e-2: a prompt whose margin is smaller, or whose
                                   continuation collapses into < 4 distinct tokens, is replaced by the
                                   next one; a seed with no good prompt or a near-tie in a MoE router
                                   by the next seed);
  testdata/tiny/MANIFEST.json      class, versions, seed, max |logit|, margin, file sizes per model.
Every parameter is re-initialised from a fixed per-model seed (crc32 of the name) so that norms,
biases and embeddings are all non-trivial. Each saved folder is reloaded with from_pretrained and
must reproduce the stored outputs bit for bit. CPU, one thread, float32, deterministic algorithms: a
rerun writes the same bytes.

  python3 tools/gen_tiny_models.py [--only NAME] [--out DIR]
"""
import argparse
import hashlib
import json
import os
import pathlib
import sys
import zlib

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # force CPU before torch is imported
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "tiny"

V, D, L, H, FF, P = 128, 64, 2, 4, 128, 64  # vocab, hidden, layers, heads (head_dim 16), d_ff, positions
T, GREEDY_PROMPT, GREEDY_NEW, T5_DEC = 8, 5, 8, 6
MIN_MARGIN = 1e-2       # greedy top1-top2 logit gap below this: try the next seed
MIN_ROUTER_GAP = 1e-3   # mixtral: gap between the k-th and (k+1)-th router probability
MIN_DISTINCT = 4        # greedy continuation with fewer distinct new tokens (a collapse): next prompt
MAX_PROMPTS = 16        # greedy prompts tried per seed
MAX_TRIES = 50


def make_config(name: str):
    import transformers as tf
    common = dict(vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=L, num_attention_heads=H,
                  max_position_embeddings=P, bos_token_id=1, eos_token_id=2)
    if name == "llama":
        return tf.LlamaConfig(num_key_value_heads=2, tie_word_embeddings=False, **common)
    if name == "llama3":
        return tf.LlamaConfig(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500000.0,
                              rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                              **common)
    if name == "mistral":
        return tf.MistralConfig(num_key_value_heads=2, sliding_window=4, tie_word_embeddings=False, **common)
    if name == "qwen2":
        return tf.Qwen2Config(num_key_value_heads=2, tie_word_embeddings=False, **common)
    if name == "gemma":
        return tf.GemmaConfig(num_key_value_heads=1, head_dim=16, pad_token_id=0, **common)
    if name == "phi3":
        return tf.Phi3Config(num_key_value_heads=4, pad_token_id=0, original_max_position_embeddings=P,
                             tie_word_embeddings=False, **common)
    if name == "mixtral":
        return tf.MixtralConfig(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                tie_word_embeddings=False, **common)
    if name == "gpt2":
        return tf.GPT2Config(vocab_size=V, n_embd=D, n_layer=L, n_head=H, n_inner=FF, n_positions=P,
                             bos_token_id=1, eos_token_id=2)
    if name == "opt":
        return tf.OPTConfig(vocab_size=V, hidden_size=D, ffn_dim=FF, num_hidden_layers=L, num_attention_heads=H,
                            word_embed_proj_dim=D, max_position_embeddings=P, do_layer_norm_before=True,
                            pad_token_id=1, bos_token_id=2, eos_token_id=2)
    if name == "bloom":
        # BLOOM has no intermediate size: its MLP is always 4*hidden.
        return tf.BloomConfig(vocab_size=V, hidden_size=D, n_layer=L, n_head=H, bos_token_id=1, eos_token_id=2,
                              pad_token_id=0)
    if name == "gpt_neox":
        return tf.GPTNeoXConfig(rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False, **common)
    if name == "bert":
        return tf.BertConfig(vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=L,
                             num_attention_heads=H, max_position_embeddings=P, pad_token_id=0)
    if name == "t5":
        # like flan-t5: gated-gelu, untied lm_head
        return tf.T5Config(vocab_size=V, d_model=D, d_kv=D // H, d_ff=FF, num_layers=L, num_decoder_layers=L,
                           num_heads=H, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                           decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    raise KeyError(name)


CLASSES = {"llama": "LlamaForCausalLM", "llama3": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
           "qwen2": "Qwen2ForCausalLM", "gemma": "GemmaForCausalLM", "phi3": "Phi3ForCausalLM",
           "gpt2": "GPT2LMHeadModel", "opt": "OPTForCausalLM", "bloom": "BloomForCausalLM",
           "gpt_neox": "GPTNeoXForCausalLM", "mixtral": "MixtralForCausalLM", "bert": "BertModel",
           "t5": "T5ForConditionalGeneration"}
# Tied input/output embeddings: randn*1 rows would give logits with std ~8, so scale them down.
EMBED_SCALE = {"llama3": 0.35, "gemma": 0.35, "gpt2": 0.35, "opt": 0.35, "bloom": 0.35}
LM_HEAD_GAIN = 2.0  # untied lm_head: randn/sqrt(d)*2 so the logits have a std of ~2, not ~1
# A random model with tied embeddings predicts its own input token (the residual stream carries the
# token's embedding to the tied head), so greedy decoding collapses into one repeated token. A gain
# on the projections that write into the residual stream makes the layers dominate it.
RESID_GAIN = {"llama3": 3.0, "opt": 3.0, "gpt2": 3.0, "bloom": 8.0, "gemma": 8.0}
RESID_OUT = {"o_proj", "down_proj", "dense", "dense_4h_to_h", "c_proj", "fc2", "out_proj"}


def reinit(model, name: str, seed: int) -> None:
    """Overwrites every parameter from one generator: norms 1+0.2*randn (Gemma stores w for a 1+w
    scale: 0.2*randn), biases 0.1*randn, embeddings randn*scale, other weights randn/sqrt(fan_in)
    (times LM_HEAD_GAIN for an untied head, RESID_GAIN for a residual-stream output projection)."""
    import torch
    from transformers.pytorch_utils import Conv1D
    g = torch.Generator().manual_seed(seed)
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    owner = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = (mname, mod)
    with torch.no_grad():
        for pname, p in model.named_parameters():  # tied parameters appear once
            mname, mod = owner[pname]
            gain = RESID_GAIN.get(name, 1.0) if mname.rsplit(".", 1)[-1] in RESID_OUT else 1.0
            leaf = pname.rsplit(".", 1)[-1]
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            is_norm = "norm" in type(mod).__name__.lower()
            if is_norm and leaf == "weight":
                v = 0.2 * r if name == "gemma" else 1.0 + 0.2 * r
            elif leaf == "bias" or leaf.endswith("_bias"):
                v = 0.1 * r
            elif isinstance(mod, torch.nn.Embedding):
                v = r * (1.0 if "relative_attention_bias" in pname else EMBED_SCALE.get(name, 1.0))
            elif isinstance(mod, torch.nn.Linear):
                v = r / mod.in_features ** 0.5 * (LM_HEAD_GAIN if mod is head and not tied else gain)
            elif isinstance(mod, Conv1D):  # GPT-2: weight is [n_in, n_out]
                v = r / p.shape[0] ** 0.5 * gain
            elif p.dim() == 3 and type(mod).__name__.endswith("Experts"):  # [n_experts, n_out, n_in]
                v = r / p.shape[-1] ** 0.5
            elif p.dim() == 2 and type(mod).__name__.endswith("Router"):  # [n_experts, d_model]
                v = r / p.shape[-1] ** 0.5
            else:
                raise RuntimeError(f"{name}: no init rule for {pname} {tuple(p.shape)} in {type(mod).__name__}")
            p.copy_(v)


def top2_gap(logits):
    import torch
    t = torch.topk(logits.double(), 2, dim=-1).values
    return float((t[..., 0] - t[..., 1]).min())


class RouterWatch:
    """Records the smallest gap between the k-th and (k+1)-th router probability (MoE only), so that
    an engine with ~1e-5 error cannot pick a different expert."""

    def __init__(self, model):
        import torch
        self.gap = float("inf")
        self.handles = []
        for mod in model.modules():
            if type(mod).__name__.endswith("TopKRouter"):
                def hook(m, args, out):
                    probs = torch.softmax(out[0].double(), dim=-1)
                    s = torch.sort(probs, dim=-1, descending=True).values
                    self.gap = min(self.gap, float((s[:, m.top_k - 1] - s[:, m.top_k]).min()))
                self.handles.append(mod.register_forward_hook(hook))


def build(name: str, seed: int):
    import torch
    import transformers as tf
    cfg = make_config(name)
    cfg.architectures = [CLASSES[name]]
    torch.manual_seed(seed)
    model = getattr(tf, CLASSES[name])._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    if name == "t5":
        # transformers 5 forces T5Config.tie_word_embeddings to True and keeps tie_word_embeddings=False
        # only as scale_decoder_outputs=False. flan-t5 has its own lm_head.weight (present in the file,
        # different from shared.weight, so from_pretrained leaves it untied): untie to match.
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
        model.all_tied_weights_keys.pop("lm_head.weight")
    reinit(model, name, seed)
    model.eval()
    return model


def greedy_run(model, name: str, prompt):
    """Greedy generate; returns (sequences, smallest top1-top2 gap, new token ids), after checking
    that one full forward over the result gives the same argmax chain and the same logits."""
    import torch
    # eos_token_id=None: generation never stops early and no processor edits the logits, so the
    # result is the plain argmax chain.
    gen = model.generate(prompt, do_sample=False, max_new_tokens=GREEDY_NEW, min_new_tokens=GREEDY_NEW,
                         eos_token_id=None, pad_token_id=0, return_dict_in_generate=True,
                         output_logits=True, num_beams=1, use_cache=True)
    greedy = gen.sequences
    margin = min(top2_gap(step) for step in gen.logits)
    if name == "t5":
        assert greedy.shape == (1, 1 + GREEDY_NEW), greedy.shape
        assert int(greedy[0, 0]) == model.config.decoder_start_token_id
        step_logits = model(input_ids=prompt, decoder_input_ids=greedy[:, :-1]).logits[0]
        want = greedy[0, 1:]
    else:
        assert greedy.shape == (1, GREEDY_PROMPT + GREEDY_NEW), greedy.shape
        assert torch.equal(greedy[:, :GREEDY_PROMPT], prompt)
        step_logits = model(input_ids=greedy).logits[0, GREEDY_PROMPT - 1:-1]
        want = greedy[0, GREEDY_PROMPT:]
    assert torch.equal(step_logits.argmax(-1), want), (name, step_logits.argmax(-1), want)
    for a, b in zip(gen.logits, step_logits):
        assert float((a[0] - b).abs().max()) < 1e-4, name  # cached decode == full forward
    return greedy, min(margin, top2_gap(step_logits)), want.tolist()


def run(name: str, seed: int):
    """Builds the model for one seed and computes the references; returns (model, refs, stats), or a
    string saying why the seed is rejected (a margin check failed)."""
    import torch
    model = build(name, seed)
    watch = RouterWatch(model)
    g = torch.Generator().manual_seed(seed ^ 0x5EED)
    ids = torch.randint(3, V, (2, T), generator=g, dtype=torch.int64)
    assert not torch.equal(ids[0], ids[1])
    refs = {"input_ids": ids}
    stats = {}
    with torch.no_grad():
        if name == "bert":
            out = model(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            refs["last_hidden_state"] = out.last_hidden_state.contiguous()
            stats["max_abs_hidden"] = float(out.last_hidden_state.abs().max())
            stats["hidden_std"] = float(out.last_hidden_state.std())
            return model, refs, stats
        if name == "t5":
            dec = torch.randint(3, V, (2, T5_DEC), generator=g, dtype=torch.int64)
            dec[:, 0] = model.config.decoder_start_token_id
            refs["decoder_input_ids"] = dec
            logits = model(input_ids=ids, decoder_input_ids=dec).logits
        else:
            logits = model(input_ids=ids).logits
        refs["logits"] = logits.contiguous()
        stats["max_abs_logit"] = float(logits.abs().max())
        stats["logit_std"] = float(logits.std())
        if name == "mistral":  # the window must change the result, or the fixture tests nothing
            model.config.sliding_window = None
            full = model(input_ids=ids).logits
            model.config.sliding_window = 4
            stats["sliding_window_effect"] = float((full - logits).abs().max())
            assert stats["sliding_window_effect"] > 1e-2, stats

        # The first of up to MAX_PROMPTS prompts whose greedy continuation is safe and does not collapse.
        why = "no prompt"
        for _ in range(MAX_PROMPTS):
            prompt = torch.randint(3, V, (1, GREEDY_PROMPT), generator=g, dtype=torch.int64)
            greedy, margin, new = greedy_run(model, name, prompt)
            if margin < MIN_MARGIN:
                why = f"greedy margin {margin:.3g} < {MIN_MARGIN}"
            elif len(set(new)) < MIN_DISTINCT:
                why = f"greedy continuation {new} has < {MIN_DISTINCT} distinct tokens"
            else:
                break
        else:
            return f"{MAX_PROMPTS} prompts tried, last: {why}"
    refs["greedy_prompt"] = prompt
    refs["greedy_ids"] = greedy.contiguous()
    refs["greedy_margin"] = torch.tensor([margin], dtype=torch.float32)
    stats["greedy_margin"] = margin
    stats["greedy_distinct_new"] = len(set(new))
    if watch.handles:
        stats["router_min_gap"] = watch.gap
        if watch.gap < MIN_ROUTER_GAP:
            return f"router top-k gap {watch.gap:.3g} < {MIN_ROUTER_GAP}"
    return model, refs, stats


def check_reload(name: str, d: pathlib.Path, refs: dict) -> None:
    """The saved folder alone, loaded by transformers, reproduces the references bit for bit."""
    import torch
    import transformers as tf
    model = getattr(tf, CLASSES[name]).from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
    ids = refs["input_ids"]
    with torch.no_grad():
        if name == "bert":
            got = model(input_ids=ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state
            want = refs["last_hidden_state"]
        elif name == "t5":
            got, want = model(input_ids=ids, decoder_input_ids=refs["decoder_input_ids"]).logits, refs["logits"]
        else:
            got, want = model(input_ids=ids).logits, refs["logits"]
    assert torch.equal(got, want), (name, float((got - want).abs().max()))


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(name: str, out: pathlib.Path) -> dict:
    import torch
    import transformers as tf
    from safetensors.torch import save_file
    base = zlib.crc32(name.encode()) & 0x7FFFFFFF
    for k in range(MAX_TRIES):
        seed = base + k
        got = run(name, seed)
        if not isinstance(got, str):
            break
        print(f"{name}: seed {seed} rejected ({got}), trying {seed + 1}")
    else:
        raise RuntimeError(f"{name}: no seed in {MAX_TRIES} tries passes the margin checks")
    model, refs, stats = got
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    model.save_pretrained(d, safe_serialization=True)
    check_reload(name, d, refs)
    save_file({k: v.contiguous() for k, v in refs.items()}, str(d / "reference.safetensors"))
    entry = {"class": CLASSES[name], "transformers": tf.__version__, "torch": torch.__version__, "seed": seed}
    entry.update(stats)
    entry["files"] = {f.name: f.stat().st_size for f in sorted(d.iterdir())}
    entry["reference_sha256"] = sha256(d / "reference.safetensors")
    print(f"{name}: seed {seed} " + " ".join(f"{k}={v:.4g}" for k, v in stats.items())
          + f" ({sum(entry['files'].values())} bytes)")
    return entry


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(CLASSES), help="make one model (MANIFEST.json is updated)")
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    a = ap.parse_args()
    import torch
    import transformers as tf
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    tf.logging.set_verbosity_error()
    try:
        tf.utils.logging.disable_progress_bar()
    except AttributeError:
        pass
    a.out.mkdir(parents=True, exist_ok=True)
    man_path = a.out / "MANIFEST.json"
    manifest = json.loads(man_path.read_text()) if a.only and man_path.exists() else {}
    for name in ([a.only] if a.only else list(CLASSES)):
        manifest[name] = generate(name, a.out)
    manifest = dict(sorted(manifest.items()))
    man_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(sum(e["files"].values()) for e in manifest.values())
    print(f"wrote {man_path} ({len(manifest)} models, {total} bytes of model files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
