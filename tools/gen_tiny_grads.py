#!/usr/bin/env python3
"""Developer tool (needs PyPI torch and transformers; CI never runs it).

For each tiny decoder model of testdata/tiny (tools/gen_tiny_models.py), the gradient reference of
`llmkit grads`: transformers' causal-LM loss with labels = input_ids (the model shifts them by one
inside and averages the cross-entropy over every predicted position), on the `input_ids` [2, 8] of
the folder's reference.safetensors, float32 on the CPU, one thread, eval mode (no dropout). Writes
testdata/tiny/<name>/grads.safetensors: every parameter's gradient under its name in the folder's
model.safetensors (tied weights once) and `loss` [1].

  python3 tools/gen_tiny_grads.py [--only NAME]
"""
import argparse
import os
import pathlib

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ROOT / "testdata" / "tiny"
DECODERS = ["llama", "llama3", "mistral", "qwen2", "gemma", "phi3", "gpt2", "opt", "bloom", "gpt_neox", "mixtral"]


def fused_experts(n, p, ckpt):
    """transformers 5 fuses Mixtral's experts into mlp.experts.gate_up_proj [E, 2F, d] (gate rows
    first) and mlp.experts.down_proj [E, d, F]; the checkpoint keeps one w1 (gate), w3 (up) and w2
    (down) per expert. Returns {checkpoint name: (param name, index function)} after checking the
    values agree, or None when n is not a fused expert tensor."""
    if not (n.endswith("mlp.experts.gate_up_proj") or n.endswith("mlp.experts.down_proj")):
        return None
    base = n[: -len("mlp.experts.gate_up_proj")] if n.endswith("gate_up_proj") else n[: -len("mlp.experts.down_proj")]
    out = {}
    for e in range(p.shape[0]):
        pre = f"{base}block_sparse_moe.experts.{e}."
        if n.endswith("gate_up_proj"):
            f = p.shape[1] // 2
            parts = {pre + "w1.weight": (lambda t, e=e, f=f: t[e, :f]), pre + "w3.weight": (lambda t, e=e, f=f: t[e, f:])}
        else:
            parts = {pre + "w2.weight": (lambda t, e=e: t[e])}
        for k, fn in parts.items():
            if not torch.equal(fn(p.detach()), ckpt[k]):
                raise SystemExit(f"{n}: expert {e} does not match checkpoint tensor {k}")
            out[k] = (n, fn)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name in DECODERS:
        if a.only and name != a.only:
            continue
        d = TINY / name
        if not (d / "config.json").exists():
            continue
        ids = load_file(str(d / "reference.safetensors"))["input_ids"].long()
        model = AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32, attn_implementation="eager")
        model.eval()
        # Gradients go under the checkpoint's names (model.safetensors), which are what a user matches
        # them against; transformers may rename a parameter internally (GPT-NeoX: embed_out.weight is
        # lm_head.weight in named_parameters), so each parameter is found by its exact initial values.
        ckpt = load_file(str(d / "model.safetensors"))
        names = {}
        fused = {}
        for n, p in model.named_parameters():
            f = fused_experts(n, p, ckpt)
            if f is not None:
                fused.update(f)
                continue
            if n in ckpt:
                names[n] = n
                continue
            same = [k for k, t in ckpt.items() if t.shape == p.shape and torch.equal(t, p.detach())]
            if len(same) != 1:
                raise SystemExit(f"{name}: cannot tell which checkpoint tensor {n} is ({same})")
            names[n] = same[0]
        model.zero_grad()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        grads = {names[n]: p.grad.detach().contiguous().clone() for n, p in model.named_parameters()
                 if p.grad is not None and n in names}
        params = dict(model.named_parameters())
        for k, (n, fn) in fused.items():
            grads[k] = fn(params[n].grad.detach()).contiguous().clone()
        grads["loss"] = out.loss.detach().reshape(1).clone()
        save_file(grads, str(d / "grads.safetensors"))
        gmax = max(float(g.abs().max()) for k, g in grads.items() if k != "loss")
        print(f"{name}: loss {out.loss.item():.6f}, {len(grads) - 1} gradients, max |g| {gmax:.4g}")
        if name == "llama":
            adamw_curve(d, model, names)


# A 20-step AdamW run from the tiny LLaMA's weights: the reference loss curve of
# tests/test_grads.cc. Batches [2, 12] of ids drawn from a fixed torch generator; weight decay on
# matrices only (llmkit's ParamStore convention: norms and biases exempt).
STEPS, LR, BETAS, EPS, WD = 20, 3e-3, (0.9, 0.95), 1e-8, 0.1


def adamw_curve(d, model, names):
    g = torch.Generator().manual_seed(1234)
    vocab = model.config.vocab_size
    batches = torch.randint(0, vocab, (STEPS, 2, 12), generator=g)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for s in range(STEPS):
        opt.zero_grad()
        out = model(input_ids=batches[s], labels=batches[s])
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    save_file({"input_ids": batches.contiguous(), "loss": torch.tensor(losses, dtype=torch.float32)},
              str(d / "adamw20.safetensors"),
              metadata={"lr": str(LR), "beta1": str(BETAS[0]), "beta2": str(BETAS[1]), "eps": str(EPS),
                        "weight_decay": str(WD), "steps": str(STEPS)})
    print(f"llama AdamW x{STEPS}: loss {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
