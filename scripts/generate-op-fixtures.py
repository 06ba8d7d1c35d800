#!/usr/bin/env python3
"""Writes Tests/FineTuneTests/Fixtures/torch-ops/ops.safetensors: inputs, outputs and gradients of
the op set computed by PyTorch, where FineTune must follow PyTorch's conventions.

Run with the development venv (torch and safetensors installed):

    /work/venv/bin/python scripts/generate-op-fixtures.py

Every case stores its inputs, its outputs and, for differentiable ops, the gradient of
`sum(output * seed)` with respect to each input for a stored random `seed`. Keys are
`<case>.<name>`; integer tensors (targets, indices) are int64. TorchOpFixtureTests reads them.
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}


def rand(*shape, scale=1.0):
    return (torch.rand(size=tuple(shape), dtype=torch.float64) * 2 - 1).float() * scale


def put(case, **tensors):
    for name, t in tensors.items():
        out[f"{case}.{name}"] = t.detach().contiguous().clone()


def grads(case, outputs, inputs):
    """Stores a seed per output and d sum(output * seed) / d input for each named input."""
    total = 0
    for name, y in outputs.items():
        seed = rand(*y.shape)
        put(case, **{f"{name}_seed": seed})
        total = total + (y * seed).sum()
    names = list(inputs)
    gs = torch.autograd.grad(total, [inputs[n] for n in names], allow_unused=True)
    for n, g in zip(names, gs):
        put(case, **{f"d_{n}": g if g is not None else torch.zeros_like(inputs[n])})


def leaf(t):
    return t.clone().requires_grad_(True)


# var / std: Bessel's correction and friends.
x = leaf(rand(3, 5, scale=2))
ys = {"var1": x.var(dim=1), "var0": x.var(dim=1, correction=0), "var2": x.var(dim=1, correction=2),
      "std1": x.std(dim=1), "var_all": x.var(), "std0_dim0": x.std(dim=0, correction=0)}
put("variance", x=x, **ys)
grads("variance", {"var1": ys["var1"], "std0_dim0": ys["std0_dim0"]}, {"x": x})

# logsumexp, cumsum, topk, argmax/argmin.
x = leaf(rand(3, 4, 5, scale=3))
ys = {"logsumexp": torch.logsumexp(x, dim=(0, 2)), "cumsum": torch.cumsum(x, dim=1)}
put("reductions", x=x, **ys)
grads("reductions", ys, {"x": x})
x = leaf(torch.randperm(30).float().reshape(5, 6) / 10)
top = torch.topk(x, 3, dim=0)
low = torch.topk(x, 2, dim=1, largest=False)
put("topk", x=x, values=top.values, indices=top.indices, low_values=low.values, low_indices=low.indices,
    argmax=x.argmax(dim=1), argmin=x.argmin(dim=0))
grads("topk", {"values": top.values}, {"x": x})

# Element-wise ops, minimum/maximum with ties.
x = leaf(rand(4, 6, scale=5))
ys = {"silu": F.silu(x), "softplus": F.softplus(x), "softplus_b2_t3": F.softplus(x, beta=2, threshold=3),
      "erf": torch.erf(x), "sin": torch.sin(x), "cos": torch.cos(x), "rsqrt": torch.rsqrt(x.abs() + 0.5)}
put("elementwise", x=x, **ys)
grads("elementwise", ys, {"x": x})
a = leaf(torch.tensor([[1.0, 2.0, 3.0], [4.0, -1.0, 0.5]]))
b = leaf(torch.tensor([2.0, 2.0, 0.5]))
ys = {"maximum": torch.maximum(a, b), "minimum": torch.minimum(a, b)}
put("extrema", a=a, b=b, **ys)
grads("extrema", ys, {"a": a, "b": b})

# Padding modes (F.pad order: last axis first).
x = leaf(rand(1, 2, 4, 5))
ys = {"reflect": F.pad(x, (2, 1, 3, 1), mode="reflect"), "replicate": F.pad(x, (1, 2, 0, 3), mode="replicate"),
      "circular": F.pad(x, (3, 1, 2, 4), mode="circular"), "constant": F.pad(x, (1, -1, 2, 0), value=0.5)}
put("pad", x=x, **ys)
grads("pad", ys, {"x": x})

# Shape and indexing.
x = leaf(rand(3, 4, 5))
idx = torch.randint(0, 4, (3, 2, 5))
src = leaf(rand(3, 2, 5))
ys = {"gather": torch.gather(x, 1, idx), "scatter_add": x.scatter_add(1, idx, src),
      "index_select": x.index_select(2, torch.tensor([4, 0, 4])), "repeat": x[:, :2, :3].repeat(2, 1, 3),
      "flip": x.flip(0, 2), "tril": x.tril(1), "triu": x.triu(-1)}
put("indexing", x=x, index=idx, source=src, **ys)
grads("indexing", ys, {"x": x, "source": src})

# Cross-entropy: class weights, ignore_index averaging, smoothing, [B, V, T] logits.
logits = leaf(rand(6, 5, scale=3))
target = torch.tensor([0, 4, -100, 2, 2, 1])
weight = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25])
ys = {"mean": F.cross_entropy(logits, target, weight=weight),
      "sum": F.cross_entropy(logits, target, weight=weight, reduction="sum"),
      "none": F.cross_entropy(logits, target, weight=weight, reduction="none"),
      "smooth": F.cross_entropy(logits, target, weight=weight, label_smoothing=0.2),
      "smooth_unweighted": F.cross_entropy(logits, target, label_smoothing=0.3),
      "ignore2": F.cross_entropy(logits, torch.tensor([0, 4, 1, 2, 2, 1]), ignore_index=2),
      "nll": F.nll_loss(F.log_softmax(logits, dim=1), target, weight=weight)}
put("cross_entropy", logits=logits, target=target, weight=weight, **ys)
grads("cross_entropy", {k: ys[k] for k in ["mean", "none", "smooth", "ignore2", "nll"]}, {"logits": logits})
# Sequence logits: PyTorch takes [B, V, T]; FineTune takes the [B, T, V] the model produces.
seq = leaf(rand(2, 3, 7, scale=2))           # [B, T, V]
seq_target = torch.tensor([[6, 0, -100], [3, 3, 1]])
ys = {"mean": F.cross_entropy(seq.transpose(1, 2), seq_target),
      "none": F.cross_entropy(seq.transpose(1, 2), seq_target, reduction="none")}
put("sequence_cross_entropy", logits=seq, target=seq_target, **ys)
grads("sequence_cross_entropy", ys, {"logits": seq})

# KL divergence: every reduction, log targets.
inp = leaf(F.log_softmax(rand(3, 4, scale=2), dim=1))
tgt = leaf(F.softmax(rand(3, 4, scale=2), dim=1))
log_tgt = leaf(F.log_softmax(rand(3, 4, scale=2), dim=1))
ys = {"mean": F.kl_div(inp, tgt, reduction="mean"), "batchmean": F.kl_div(inp, tgt, reduction="batchmean"),
      "sum": F.kl_div(inp, tgt, reduction="sum"), "none": F.kl_div(inp, tgt, reduction="none"),
      "log_target": F.kl_div(inp, log_tgt, reduction="batchmean", log_target=True)}
put("kl_div", input=inp, target=tgt, log_target_input=log_tgt, **ys)
grads("kl_div", ys, {"input": inp, "target": tgt, "log_target_input": log_tgt})

# Huber and smooth L1.
p = leaf(rand(3, 4, scale=3))
t = leaf(rand(3, 4))
ys = {"huber": F.huber_loss(p, t, delta=0.7), "smooth_l1": F.smooth_l1_loss(p, t, beta=1.5, reduction="sum"),
      "huber_none": F.huber_loss(p, t, reduction="none")}
put("robust", prediction=p, target=t, **ys)
grads("robust", ys, {"prediction": p, "target": t})

# Scaled dot-product attention: grouped-query head mapping, masks, causal.
q = leaf(rand(2, 4, 5, 8))
k = leaf(rand(2, 2, 7, 8))
v = leaf(rand(2, 2, 7, 6))
bias = leaf(rand(2, 1, 5, 7))
allowed = torch.rand(5, 7) > 0.3
allowed[:, 0] = True
ys = {"gqa": F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
      "gqa_bias": F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True),
      "gqa_causal": F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True, scale=0.4),
      "gqa_bool": F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)}
put("attention", q=q, k=k, v=v, bias=bias, allowed=allowed.float(), **ys)
grads("attention", ys, {"q": q, "k": k, "v": v, "bias": bias})

# RMSNorm and GroupNorm.
x = leaf(rand(2, 3, 8, scale=2))
w = leaf(rand(8))
ys = {"rms": F.rms_norm(x, (8,), weight=w, eps=1e-6), "rms_default_eps": F.rms_norm(x * 1e-3, (3, 8))}
put("rms_norm", x=x, weight=w, **ys)
grads("rms_norm", ys, {"x": x, "weight": w})
x = leaf(rand(2, 6, 3, 4, scale=2) + 0.5)
w = leaf(rand(6))
b = leaf(rand(6))
ys = {"group": F.group_norm(x, 3, weight=w, bias=b, eps=1e-5)}
put("group_norm", x=x, weight=w, bias=b, **ys)
grads("group_norm", ys, {"x": x, "weight": w, "bias": b})

# Conv1d and ConvTranspose2d.
x = leaf(rand(2, 4, 9))
w = leaf(rand(6, 2, 3))
b = leaf(rand(6))
ys = {"y": F.conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2)}
put("conv1d", x=x, weight=w, bias=b, **ys)
grads("conv1d", ys, {"x": x, "weight": w, "bias": b})
x = leaf(rand(2, 4, 3, 4))
w = leaf(rand(4, 3, 3, 2))
b = leaf(rand(6))
ys = {"y": F.conv_transpose2d(x, w, b, stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2))}
put("conv_transpose2d", x=x, weight=w, bias=b, **ys)
grads("conv_transpose2d", ys, {"x": x, "weight": w, "bias": b})

# Pooling: ceil_mode output sizes and divisors, dilation.
x = leaf(torch.randperm(2 * 7 * 6).float().reshape(1, 2, 7, 6) / 10)
ys = {"max_ceil": F.max_pool2d(x, 3, stride=2, ceil_mode=True),
      "max_ceil_pad": F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
      "max_dilated": F.max_pool2d(x, 2, stride=(1, 2), padding=1, dilation=(2, 3)),
      "avg_ceil": F.avg_pool2d(x, 2, ceil_mode=True, count_include_pad=False),
      "avg_ceil_pad": F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
      "avg_ceil_pad_exclude": F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)}
put("pool", x=x, **ys)
grads("pool", ys, {"x": x})

# Embedding with padding_idx.
emb = torch.nn.Embedding(5, 3, padding_idx=1)
ids = torch.tensor([[1, 4, 1], [0, 2, 4]])
y = emb(ids)
put("embedding", weight=emb.weight, ids=ids, y=y)
grads("embedding", {"y": y}, {"weight": emb.weight})

# BatchNorm: batch statistics (training; the running statistics move with the unbiased variance)
# and running statistics (evaluation) with weight and bias, on [N, C, H, W] and [N, C].
for case, shape in (("batch_norm", (4, 3, 2, 5)), ("batch_norm_1d", (6, 3))):
    x = leaf(rand(*shape, scale=2) + 0.5)
    w = leaf(rand(3))
    b = leaf(rand(3))
    running_mean, running_var = rand(3) * 0.3, rand(3).abs() + 0.5
    moved_mean, moved_var = running_mean.clone(), running_var.clone()
    ys = {"train": F.batch_norm(x, moved_mean, moved_var, w, b, training=True, momentum=0.2, eps=1e-5),
          "eval": F.batch_norm(x, running_mean, running_var, w, b, training=False, eps=1e-3),
          "train_plain": F.batch_norm(x, None, None, training=True)}
    put(case, x=x, weight=w, bias=b, running_mean=running_mean, running_var=running_var,
        moved_mean=moved_mean, moved_var=moved_var, **ys)
    grads(case, ys, {"x": x, "weight": w, "bias": b})

folder = os.path.join(os.path.dirname(__file__), "..", "Tests", "FineTuneTests", "Fixtures", "torch-ops")
os.makedirs(folder, exist_ok=True)
save_file(out, os.path.join(folder, "ops.safetensors"), metadata={"torch": torch.__version__})
print(f"wrote {len(out)} tensors with torch {torch.__version__}")
