#!/usr/bin/env python3
"""FineTuneBench's cases in PyTorch, for `FineTuneBench --compare` (a developer tool, not run in CI).

    /work/venv/bin/python scripts/torch_bench.py models --threads 1 --json > torch.json
    swift run -c release FineTuneBench models --threads 1 --compare torch.json

Runs the cases of the suites named on the command line (without names: gemm, conv, mlp, cnn and
transformer; `resnet-convs` and `models` run only when named), with the same case and suite names,
in PyTorch with its defaults (oneDNN/MKL, NCHW, `torch.set_num_threads(n)`), and prints a table
or, with --json, FineTuneBench's JSON schema (`framework` says "PyTorch ..."). Timing is
FineTuneBench's (Sources/FineTuneBench/Measure.swift): warm up for 0.2 s (at least one run), then
repeat until --budget seconds of timed runs, report the median and the fastest run.

What each case runs, mirroring Sources/FineTuneBench/Suites:
  gemm          torch.mm into a preallocated output: square sgemm_N and the three GEMMs of a Linear
                784 -> 512 at batch 128 and of BERT-base's 768 -> 3072 over 1024 tokens (the naive-loop
                reference has no PyTorch counterpart).
  conv          F.conv2d 3x3 (batch 32, 64 -> 64, 32x32) and depthwise 3x3/s2, with bias; forward
                under no_grad, and forward + backward through autograd from a fixed output gradient
                with input and weight requiring gradients (the bias gets none, as in FineTune).
  resnet-convs  the same for every distinct convolution of torchvision's ResNet-18 and ResNet-50 at
                batch 8, 224x224, no bias; the shapes and names come from forward hooks on the models.
  mlp, cnn, transformer, models
                training steps (zero_grad, forward, loss, backward, step) of the same models with the
                same optimizers: AdamW(lr 1e-3, weight decay 0.01 on weights but not on biases and
                norms, FineTune's default) except the ResNets, which take SGD(lr 0.01, momentum 0.9).
                Frozen BatchNorms run in eval mode (FineTune's frozen BatchNorm uses its running
                statistics). LoRA is peft's formula written out (base + B(A(x)) * alpha / r, B zero,
                no dropout): peft cannot wrap `out_proj` inside nn.MultiheadAttention, which reads
                the weight directly, so the transformer block is written out too (pre-norm, packed
                in-projection, F.scaled_dot_product_attention, exact GELU), as FineTune's
                TransformerEncoderBlock.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- timing

def measure(body, budget, warmup=0.2, max_repetitions=1_000_000):
    """(median, min, repetitions) of `body` in seconds, as FineTuneBench's `measure`."""
    start = time.perf_counter()
    while True:
        body()
        if time.perf_counter() - start >= min(warmup, budget):
            break
    samples, total = [], 0.0
    while True:
        t0 = time.perf_counter()
        body()
        elapsed = time.perf_counter() - t0
        samples.append(elapsed)
        total += elapsed
        if total >= budget or len(samples) >= max_repetitions:
            break
    return statistics.median(samples), min(samples), len(samples)


class Case:
    """A named workload: `make()` builds the inputs once and returns (run, checksum) callables."""

    def __init__(self, name, detail, flops, make, uses_threads=True):
        self.name, self.detail, self.flops, self.make, self.uses_threads = name, detail, flops, make, uses_threads


def uniform(*shape):
    return torch.rand(*shape) * 2 - 1


# ---------------------------------------------------------------- gemm

def gemm_case(name, detail, m, n, k, trans_a=False, trans_b=False):
    def make():
        a = uniform(k, m) if trans_a else uniform(m, k)
        b = uniform(n, k) if trans_b else uniform(k, n)
        c = torch.empty(m, n)
        left, right = (a.t() if trans_a else a), (b.t() if trans_b else b)
        return (lambda: torch.mm(left, right, out=c)), (lambda: c.sum().item())
    return Case(name, detail, 2.0 * m * n * k, make)


def gemm_cases():
    cases = [gemm_case(f"sgemm_{s}", f"torch.mm [{s}x{s}]·[{s}x{s}]", s, s, s) for s in (64, 256, 512, 1024)]
    for b, i, o in ((128, 784, 512), (1024, 768, 3072)):   # an MLP layer; BERT-base's feed-forward
        suffix = f"{b}x{i}x{o}"
        cases += [gemm_case(f"linear_fwd_{suffix}", "X·W^T", b, o, i, trans_b=True),
                  gemm_case(f"linear_dx_{suffix}", "dY·W", b, i, o),
                  gemm_case(f"linear_dw_{suffix}", "dY^T·X", o, i, b, trans_a=True)]
    return cases


# ---------------------------------------------------------------- convolutions

def conv_flops(batch, cin, cout, out_size, kernel, groups=1):
    return 2.0 * batch * cout * out_size * out_size * (cin // groups) * kernel * kernel


def conv_pair(name, batch, cin, cout, size, kernel, stride, padding, groups=1, bias=True, detail=""):
    """`name_fwd` and `name_fwd_bwd` cases of one convolution (3x forward flops for the latter)."""
    out_size = (size + 2 * padding - kernel) // stride + 1
    flops = conv_flops(batch, cin, cout, out_size, kernel, groups)

    def make(backward):
        def build():
            x = uniform(batch, cin, size, size).requires_grad_(backward)
            w = uniform(cout, cin // groups, kernel, kernel).requires_grad_(backward)
            b = uniform(cout) if bias else None

            def conv():
                return F.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
            if not backward:
                state = {}

                def run():
                    with torch.no_grad():
                        state["y"] = conv()
                return run, lambda: state["y"].sum().item()
            grad_output = uniform(batch, cout, out_size, out_size)

            def run():
                x.grad = None
                w.grad = None
                conv().backward(grad_output)
            return run, lambda: x.grad.sum().item() + w.grad.sum().item()
        return build
    shape = f"[{batch}x{cin}x{size}x{size}] -> [{batch}x{cout}x{out_size}x{out_size}]"
    return [Case(name + "_fwd", f"F.conv2d {shape} {detail}".rstrip(), flops, make(False)),
            Case(name + "_fwd_bwd", "the same, forward + input and weight gradients (autograd)", 3 * flops, make(True))]


def conv_cases():
    return (conv_pair("conv3x3", 32, 64, 64, 32, 3, 1, 1) +
            conv_pair("dw3x3s2", 32, 64, 64, 32, 3, 2, 1, groups=64, detail="depthwise"))


def resnet_conv_shapes():
    """The distinct convolutions of torchvision's resnet18 and resnet50 on 224x224 images, in
    forward order, named as in ResNetConvSuite.swift: `<r18|r50>_<stem|lN>_<k>x<k>[s2]_<channels>_<size>`."""
    import torchvision
    shapes = OrderedDict()
    for arch, tag in (("resnet18", "r18"), ("resnet50", "r50")):
        model = getattr(torchvision.models, arch)()
        hooks = []
        for module_name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                def hook(mod, inputs, output, module_name=module_name):
                    key = (mod.in_channels, mod.out_channels, mod.kernel_size[0], mod.stride[0], inputs[0].shape[2])
                    shapes.setdefault(key, (tag, module_name))
                hooks.append(module.register_forward_hook(hook))
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
        for h in hooks:
            h.remove()
    named = []
    for (cin, cout, kernel, stride, size), (tag, module_name) in shapes.items():
        stage = "stem" if module_name == "conv1" else "l" + module_name[len("layer")]
        channels = f"{cin}" if cin == cout else f"{cin}to{cout}"
        name = f"{tag}_{stage}_{kernel}x{kernel}{'s2' if stride == 2 else ''}_{channels}_{size}"
        named.append((name, cin, cout, kernel, stride, size, module_name))
    return named


def resnet_conv_cases():
    cases = []
    for name, cin, cout, kernel, stride, size, module_name in resnet_conv_shapes():
        cases += conv_pair(name, 8, cin, cout, size, kernel, stride, kernel // 2, bias=False, detail=f"as {module_name}")
    return cases


# ---------------------------------------------------------------- training steps

def adamw(model):
    """FineTune's AdamW(lr: 1e-3): weight decay 0.01 on weights, none on biases and norm parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2]},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=1e-3, weight_decay=0.01)


def sgd(model):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)


def step_case(name, detail, flops, build, make_optimizer=adamw):
    """A training step: `build()` returns (model, loss_fn) with freezing already applied."""
    def make():
        model, loss_fn = build()
        optimizer = make_optimizer(model)
        state = {"loss": 0.0}

        def run():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model)
            loss.backward()
            optimizer.step()
            state["loss"] = loss.item()
        return run, lambda: state["loss"]
    return Case(name, detail, flops, make)


def freeze_all_but(model, trainable):
    """requires_grad only for parameters whose name passes `trainable`; frozen BatchNorms to eval mode."""
    for name, p in model.named_parameters():
        p.requires_grad_(trainable(name))
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


class LoRA(nn.Module):
    """peft's LoRA forward, `base(x) + B(A(x)) * alpha / r`, around a frozen Linear or Conv2d."""

    def __init__(self, base, rank=8, alpha=16):
        super().__init__()
        self.base = base
        if isinstance(base, nn.Conv2d):
            self.lora_A = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.lora_B = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            self.lora_A = nn.Linear(base.in_features, rank, bias=False)
            self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


def apply_lora(model, targets):
    """Wraps every module whose last name component is in `targets`; everything else frozen (as applyLoRA)."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, (nn.Linear, nn.Conv2d)):
                setattr(module, child_name, LoRA(child))
    freeze_all_but(model, lambda n: "lora_" in n)


def mlp_cases():
    def build():
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        x, y = uniform(128, 784), torch.randint(0, 10, (128,))
        return model, lambda m: F.cross_entropy(m(x), y)
    return [step_case("mlp_step", "zero_grad + forward + cross-entropy + backward + AdamW step", None, build)]


def cnn_cases():
    def build(frozen):
        def b():
            torch.manual_seed(6)
            model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
            if frozen:
                freeze_all_but(model, lambda n: not (n.startswith("0.") or n.startswith("3.")))
            x, y = uniform(64, 1, 28, 28), torch.randint(0, 10, (64,))
            return model, lambda m: F.cross_entropy(m(x), y)
        return b
    return [step_case("cnn_step_full", "every parameter trains", None, build(False)),
            step_case("cnn_step_frozen", "both convolutions frozen", None, build(True))]


class EncoderBlock(nn.Module):
    """FineTune's TransformerEncoderBlock (= nn.TransformerEncoderLayer, norm_first, batch_first,
    dropout 0, GELU), written out so that LoRA can wrap `self_attn.out_proj`."""

    def __init__(self, d_model, heads, ffn):
        super().__init__()
        self.heads = heads
        self.self_attn = nn.Module()
        self.self_attn.in_proj = nn.Linear(d_model, 3 * d_model)
        self.self_attn.out_proj = nn.Linear(d_model, d_model)
        self.linear1, self.linear2 = nn.Linear(d_model, ffn), nn.Linear(ffn, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def attention(self, x):
        b, t, e = x.shape
        q, k, v = self.self_attn.in_proj(x).view(b, t, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.self_attn.out_proj(y.transpose(1, 2).reshape(b, t, e))

    def forward(self, x):
        h = x + self.attention(self.norm1(x))
        return h + self.linear2(F.gelu(self.linear1(self.norm2(h))))


def transformer_cases():
    def build(lora):
        def b():
            torch.manual_seed(9)
            model = EncoderBlock(256, 4, 1024)
            if lora:
                apply_lora(model, {"out_proj", "linear1", "linear2"})
            x, target = uniform(16, 64, 256), uniform(16, 64, 256)
            return model, lambda m: F.mse_loss(m(x), target)
        return b
    return [step_case("transformer_step", "forward + MSE + backward + AdamW step", None, build(False)),
            step_case("transformer_step_lora", "rank-8 LoRA on out_proj, linear1, linear2", None, build(True))]


def resnet(depth, classes=1000):
    import torchvision
    torch.manual_seed(23)
    return getattr(torchvision.models, f"resnet{depth}")(num_classes=classes)


def model_cases():
    def resnet_step(depth, variant):
        def b():
            model = resnet(depth)
            model.train()
            if variant == "frozen":
                freeze_all_but(model, lambda n: n.startswith("fc."))
            elif variant == "lora":
                apply_lora(model, {"conv2"})
            x, y = uniform(8, 3, 224, 224), torch.randint(0, 1000, (8,))
            return model, lambda m: F.cross_entropy(m(x), y)
        return b

    def bert_step(variant):
        def b():
            from transformers import BertConfig, BertForSequenceClassification
            torch.manual_seed(26)
            model = BertForSequenceClassification(BertConfig(hidden_dropout_prob=0, attention_probs_dropout_prob=0))
            model.train()
            if variant == "frozen":   # the last two encoder layers, pooler and classifier train
                freeze_all_but(model, lambda n: n.startswith(("bert.encoder.layer.10.", "bert.encoder.layer.11.",
                                                              "bert.pooler.", "classifier.")))
            elif variant == "lora":
                apply_lora(model, {"query", "value"})
            ids, labels = torch.randint(0, 30522, (8, 128)), torch.randint(0, 2, (8,))
            return model, lambda m: m(input_ids=ids, labels=labels).loss
        return b

    def llama_generate():
        from transformers import LlamaConfig, LlamaForCausalLM
        torch.manual_seed(29)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                             num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                             max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True)).eval()
        prompt = torch.tensor([[(i * 7919) % 49152 for i in range(16)]])
        state = {"last": 0.0}

        def run():
            with torch.no_grad():
                out = model.generate(prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False,
                                     eos_token_id=None, pad_token_id=0)
            state["last"] = float(out[0, -1])
        return run, lambda: state["last"]

    def llama_step(variant):
        def b():
            from transformers import LlamaConfig, LlamaForCausalLM
            torch.manual_seed(28)
            # SmolLM-135M's sizes, as ModelSuite.llama135M.
            model = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                                 num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                                 max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True))
            model.train()
            if variant == "lora":
                apply_lora(model, {"q_proj", "v_proj"})
            ids = torch.randint(0, 49152, (4, 128))
            return model, lambda m: m(input_ids=ids, labels=ids).loss
        return b

    cases = [
        step_case("resnet18_step_full", "torchvision resnet18, batch 8, every parameter trains", 85.2e9,
                  resnet_step(18, "full"), sgd),
        step_case("resnet18_step_frozen", "only fc trains, BatchNorm in eval mode", 29.0e9, resnet_step(18, "frozen"), sgd),
        step_case("resnet18_step_lora", "rank-8 LoRA on every conv2", None, resnet_step(18, "lora"), sgd),
        step_case("resnet50_step_full", "torchvision resnet50, batch 8, every parameter trains", 194.4e9,
                  resnet_step(50, "full"), sgd),
        step_case("resnet50_step_frozen", "only fc trains, BatchNorm in eval mode", 65.5e9, resnet_step(50, "frozen"), sgd),
        head_epoch_case(cached=False),
        head_epoch_case(cached=True),
        step_case("bert_base_step_full", "BertForSequenceClassification, batch 8, seq 128", None, bert_step("full")),
        step_case("bert_base_step_frozen", "frozen below the last two encoder layers", None, bert_step("frozen")),
        step_case("bert_base_step_lora", "rank-8 LoRA on query and value", None, bert_step("lora")),
        step_case("llama_135m_step_full", "SmolLM-135M-shaped LlamaForCausalLM, batch 4, seq 128", None, llama_step("full")),
        step_case("llama_135m_step_lora", "rank-8 LoRA on q_proj and v_proj", None, llama_step("lora")),
        Case("llama_135m_generate", "64 greedy tokens after a 16-token prompt (generate, KV cache)", None, llama_generate),
    ]
    return cases


def head_epoch_case(cached):
    """An epoch (64 images, batch 8, DataLoader) training a Linear(512, 10) head with SGD: through the
    frozen resnet18 at every step, or on its features computed once beforehand (not timed)."""
    def make():
        from torch.utils.data import DataLoader, TensorDataset
        model = resnet(18, classes=10)
        images, labels = uniform(64, 3, 224, 224), torch.randint(0, 10, (64,))
        if cached:
            head = model.fc
            model.fc = nn.Identity()
            model.eval()
            with torch.no_grad():
                features = torch.cat([model(images[i:i + 8]) for i in range(0, 64, 8)])
            trained, data = head, TensorDataset(features, labels)
        else:
            freeze_all_but(model, lambda n: n.startswith("fc."))
            trained, data = model, TensorDataset(images, labels)
        optimizer = sgd(trained)
        loader = DataLoader(data, batch_size=8)
        state = {"loss": 0.0}

        def run():
            for x, y in loader:
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(trained(x), y)
                loss.backward()
                optimizer.step()
                state["loss"] = loss.item()
        return run, lambda: state["loss"]
    if cached:
        return Case("resnet18_head_epoch_cached", "the same epoch on features computed once", None, make)
    return Case("resnet18_head_epoch_backbone", "an epoch training Linear(512, 10) through the frozen resnet18", None, make)


# ---------------------------------------------------------------- suites and ratios

# name -> (summary, runs by default, cases, extra ratios (name, baseline, label) as in the Swift suites)
SUITES = OrderedDict([
    ("gemm", ("torch.mm", True, gemm_cases, [])),
    ("conv", ("F.conv2d 3x3 and depthwise 3x3/s2", True, conv_cases, [])),
    ("resnet-convs", ("every distinct ResNet-18/50 convolution, batch 8", False, resnet_conv_cases, [])),
    ("mlp", ("AdamW step of an MLP 784-512-512-10, batch 128", True, mlp_cases, [])),
    ("cnn", ("AdamW step of a small CNN, batch 64 of 1x28x28", True, cnn_cases,
             [("cnn_step_frozen", "cnn_step_full", "full fine-tuning step")])),
    ("transformer", ("AdamW step of a pre-norm encoder block", True, transformer_cases,
                     [("transformer_step_lora", "transformer_step", "full fine-tuning step")])),
    ("models", ("ResNet-18/50 (SGD), BERT-base (AdamW), cached features", False, model_cases,
                [("resnet18_step_frozen", "resnet18_step_full", "full fine-tuning step"),
                 ("resnet50_step_frozen", "resnet50_step_full", "full fine-tuning step"),
                 ("resnet18_head_epoch_cached", "resnet18_head_epoch_backbone", "an epoch through the backbone"),
                 ("bert_base_step_lora", "bert_base_step_full", "full fine-tuning step"),
                 ("llama_135m_step_lora", "llama_135m_step_full", "full fine-tuning step")])),
])


def json_number(value):
    """A finite float, or FineTuneBench's "nan" / "inf" / "-inf" strings (JSON has no non-finite numbers)."""
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value


def threads_text(n):
    return "1 thread" if n == 1 else f"{n} threads"


def ratios(suite, results, extra):
    """FineTuneBench's ratio lines (Ratios.swift): thread scaling, then the suite's speedups."""
    out = []
    for name in dict.fromkeys(r["name"] for r in results):
        runs = [r for r in results if r["name"] == name]
        single = next((r for r in runs if r["threads"] == 1), None)
        multi = max((r for r in runs if r["threads"] > 1), key=lambda r: r["threads"], default=None)
        if single and multi:
            out.append({"suite": suite, "name": f"{name}: {threads_text(multi['threads'])} / 1 thread",
                        "value": round(single["ms"] / multi["ms"], 3)})

    def prefer_single(name):
        runs = [r for r in results if r["name"] == name]
        return next((r for r in runs if r["threads"] == 1), runs[0] if runs else None)
    for name, baseline, label in extra:
        fast, slow = prefer_single(name), prefer_single(baseline)
        if fast and slow:
            threads = (f"{threads_text(fast['threads'])} each" if fast["threads"] == slow["threads"]
                       else f"{threads_text(fast['threads'])} vs {threads_text(slow['threads'])}")
            out.append({"suite": suite, "name": f"{name} vs {label}, {threads}", "value": round(slow["ms"] / fast["ms"], 3)})
    return out


def framework():
    onednn = torch.backends.mkldnn.is_available() and "oneDNN" or "no oneDNN"
    return f"PyTorch {torch.__version__} ({onednn}, {torch.backends.cpu.get_cpu_capability()})"


def cpu_model():
    """lscpu's model name with its family and model numbers, e.g. "AMD EPYC (family 26, model 2)":
    a VM's model name alone does not tell Zen 4 (family 25, model 17) from Zen 5 (family 26)."""
    fields = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "Model name" not in fields:
        return platform.processor()
    if "CPU family" in fields and "Model" in fields:
        return f"{fields['Model name']} (family {fields['CPU family']}, model {fields['Model']})"
    return fields["Model name"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", metavar="suite", help=f"suites to run: {', '.join(SUITES)}")
    parser.add_argument("--threads", type=int, help="run every case with N threads (default: 1 thread and all cores)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed repetitions per case and thread count")
    parser.add_argument("--filter", help="run only the cases whose name contains TEXT")
    parser.add_argument("--json", action="store_true", help="print FineTuneBench's JSON schema on stdout (progress on stderr)")
    parser.add_argument("--list", action="store_true", help="list suites and cases, then exit")
    args = parser.parse_args()
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite '{unknown[0]}' (valid: {', '.join(SUITES)})")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads needs an integer >= 1")
    if not args.budget > 0:
        parser.error("--budget needs a number of seconds > 0")

    names = list(dict.fromkeys(args.suites)) or [n for n, s in SUITES.items() if s[1]]
    selection = [(n, [c for c in SUITES[n][2]() if args.filter is None or args.filter in c.name]) for n in names]
    selection = [(n, cases) for n, cases in selection if cases]
    if not selection:
        print(f"torch_bench.py: no case name contains '{args.filter}'", file=sys.stderr)
        sys.exit(2)
    if args.list:
        for n, cases in selection:
            print(f"{n}: {SUITES[n][0]}")
            width = max(len(c.name) for c in cases)
            for c in cases:
                print(f"  {c.name:<{width}}  {c.detail}")
        return

    cores = os.cpu_count() or 1
    thread_counts = [args.threads] if args.threads else sorted({1, cores})
    emit = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else (lambda text: print(text, flush=True))
    emit(f"torch_bench · {framework()} · {cpu_model()} · {cores} cores · threads: "
         f"{' and '.join(map(str, thread_counts))} · budget {args.budget} s per case")
    width = max(len(c.name) for _, cases in selection for c in cases)
    emit(f"\n{'suite':<12}  {'case':<{width}}  {'threads':>7}  {'median ms':>11}  {'min ms':>11}  {'GFLOPS':>9}  {'reps':>7}")
    results, all_ratios = [], []
    for suite, cases in selection:
        suite_results = []
        for case in cases:
            run, checksum = case.make()
            for threads in thread_counts if case.uses_threads else [1]:
                torch.set_num_threads(threads)
                median, fastest, reps = measure(run, args.budget)
                gflops = case.flops / median / 1e9 if case.flops else None
                r = {"suite": suite, "name": case.name, "threads": threads,
                     "gflops": round(gflops, 3) if gflops else None, "peakShare": None,
                     "ms": round(median * 1e3, 6), "min_ms": round(fastest * 1e3, 6), "reps": reps,
                     "checksum": json_number(checksum())}
                emit(f"{suite:<12}  {case.name:<{width}}  {threads:>7}  {r['ms']:>11.3f}  {r['min_ms']:>11.3f}  "
                     f"{(f'{gflops:.2f}' if gflops else '-'):>9}  {reps:>7}")
                suite_results.append(r)
            del run, checksum
        results += suite_results
        all_ratios += ratios(suite, suite_results, SUITES[suite][3])
    if all_ratios:
        emit("\nRatios (speedup, from median times):\n" + "\n".join(f"  {r['name']} = {r['value']:.2f}x" for r in all_ratios))
    if args.json:
        report = {"framework": framework(), "simd": torch.backends.cpu.get_cpu_capability(), "cores": cores,
                  "build": "release", "budget_s": args.budget, "peakGFLOPS": {}, "cases": results, "ratios": all_ratios}
        print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
