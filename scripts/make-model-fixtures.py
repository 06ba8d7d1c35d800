#!/usr/bin/env python3
"""Writes small model-family fixtures under Tests/FineTuneTests/Fixtures/models/: random-initialised
models with the home projects' structure and names, saved in their own formats, with reference
logits (eval mode) and one-step gradients (training mode, cross-entropy).

    python3 scripts/make-model-fixtures.py            # needs torch and torchvision
"""
import os, json
import torch, torch.nn as nn
from torchvision.models.resnet import ResNet, BasicBlock, Bottleneck
from safetensors.torch import save_file

OUT = "Tests/FineTuneTests/Fixtures/models"

class SmallResNet(ResNet):
    """torchvision's ResNet with every stage's width scaled by `width / 64`: the same blocks,
    structure and parameter names, small enough for a fixture."""
    def __init__(self, block, layers, num_classes, width):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

def resnet_fixture(name, block, layers, width, classes, seed):
    torch.manual_seed(seed)
    model = SmallResNet(block, layers, classes, width)
    # Non-trivial BatchNorm state, as a trained model has.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)
    os.makedirs(OUT, exist_ok=True)
    torch.save(model.state_dict(), f"{OUT}/{name}.pth")
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(3, 3, 32, 32, generator=g)
    y = torch.tensor([0, 2, classes - 1])
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    ref = {"inputs": x, "logits": logits, "loss": loss.detach().reshape(1)}
    for n, p in model.named_parameters():
        ref["grad." + n] = p.grad
    save_file({k: v.contiguous() for k, v in ref.items()}, f"{OUT}/{name}-reference.safetensors")
    print(name, sum(p.numel() for p in model.parameters()), "parameters")

def main():
    resnet_fixture("resnet-basic", BasicBlock, [2, 1, 1, 1], 8, 5, 0)
    resnet_fixture("resnet-bottleneck", Bottleneck, [1, 2, 1, 1], 4, 4, 1)
    with open(f"{OUT}/README.md", "w") as f:
        f.write("# models\n\nMade by scripts/make-model-fixtures.py (torch " + torch.__version__ + ").\n\n"
                "- `resnet-basic.pth`: torchvision's ResNet structure with BasicBlock, blocks [2, 1, 1, 1], width 8 "
                "(stages 8/16/32/64), 5 classes; random weights and BatchNorm statistics.\n"
                "- `resnet-bottleneck.pth`: Bottleneck blocks [1, 2, 1, 1], width 4 (stages 4/8/16/32, x4 expansion), 4 classes.\n"
                "- `*-reference.safetensors`: `inputs` [3, 3, 32, 32], eval-mode `logits`, and the training-mode "
                "cross-entropy `loss` for labels [0, 2, classes - 1] with every parameter's gradient `grad.<name>`.\n")

if __name__ == "__main__":
    main()


# ---- Hugging Face families (appended): BERT, DistilBERT, ViT -------------------------------------

def saved_name(name):
    """A parameter's name in the saved file: transformers 5 renames some modules internally (ViT's
    `vit.layers.N.attention.q_proj`) and converts back to the checkpoint names on save."""
    import re
    name = re.sub(r"^vit\.layers\.(\d+)\.", r"vit.encoder.layer.\1.", name)
    for new, old in [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                     ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
                     ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")]:
        if name.startswith("vit.encoder.layer."):
            name = name.replace(new, old)
    return name

def hf_fixture(name, model, inputs, labels, extra=None):
    """Saves `model` with save_pretrained into OUT/name, and reference logits (eval mode) plus the
    training-mode cross-entropy loss and every parameter's gradient."""
    from safetensors.torch import save_file
    folder = f"{OUT}/{name}"
    model.save_pretrained(folder)
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    model.train()
    out = model(**inputs).logits
    loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), labels.reshape(-1), ignore_index=-100)
    loss.backward()
    ref = {"logits": logits, "loss": loss.detach().reshape(1)}
    for k, v in inputs.items():
        ref["input." + k] = v.float()
    ref["labels"] = labels.float()
    from safetensors import safe_open
    saved = set(safe_open(f"{folder}/model.safetensors", "pt").keys())
    for n, p in model.named_parameters():
        if p.grad is not None:
            key = saved_name(n)
            assert key in saved, f"{n} -> {key} is not a saved key"
            ref["grad." + key] = p.grad
    save_file({k: v.contiguous() for k, v in ref.items()}, f"{folder}/reference.safetensors")
    print(name, sum(p.numel() for p in model.parameters()), "parameters")

def hf_main():
    from transformers import (BertConfig, BertForSequenceClassification, BertForTokenClassification,
                              DistilBertConfig, DistilBertForSequenceClassification,
                              ViTConfig, ViTForImageClassification)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(5, 120, (2, 7), generator=g)
    ids[1, 5:] = 0                                         # padding (pad_token_id 0)
    mask = torch.ones(2, 7, dtype=torch.long); mask[1, 5:] = 0
    types = torch.zeros(2, 7, dtype=torch.long); types[:, 4:] = 1
    bert = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=16, type_vocab_size=2, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, classifier_dropout=None)
    torch.manual_seed(10)
    m = BertForSequenceClassification(BertConfig(**bert, num_labels=3))
    hf_fixture("bert-sequence", m, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, torch.tensor([2, 0]))
    torch.manual_seed(11)
    m = BertForTokenClassification(BertConfig(**bert, num_labels=5))
    tags = torch.randint(0, 5, (2, 7), generator=g); tags[1, 5:] = -100
    hf_fixture("bert-token", m, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, tags)
    torch.manual_seed(12)
    m = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                             max_position_embeddings=16, dropout=0.0, attention_dropout=0.0,
                                                             seq_classif_dropout=0.0, num_labels=3))
    hf_fixture("distilbert-sequence", m, {"input_ids": ids, "attention_mask": mask}, torch.tensor([1, 2]))
    torch.manual_seed(13)
    m = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32,
                                            num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=4))
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    hf_fixture("vit-image", m, {"pixel_values": pixels}, torch.tensor([3, 1]))

if __name__ == "__main__":
    hf_main()


# ---- Decoder families (appended): LLaMA (with grouped-query attention, tied embeddings, llama3 RoPE
# scaling), Mistral (a sliding window) and Qwen2 (biased q/k/v projections). Run only these with
#     python3 -c "import importlib.util as u; s = u.spec_from_file_location('f', 'scripts/make-model-fixtures.py'); \
#                 m = u.module_from_spec(s); s.loader.exec_module(m); m.decoder_main()"
# ----------------------------------------------------------------------------------------------------

def decoder_fixture(name, model, ids, mask, labels, causal):
    """Saves `model` with save_pretrained into OUT/name, with reference logits (eval mode), the
    training-mode loss transformers computes for `labels` (its own shifted causal-LM loss, or
    cross-entropy of the pooled logits) and every parameter's gradient."""
    from safetensors.torch import save_file
    from safetensors import safe_open
    folder = f"{OUT}/{name}"
    model.save_pretrained(folder)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    model.train()
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    ref = {"logits": logits, "loss": loss.detach().reshape(1), "input.input_ids": ids.float(),
           "input.attention_mask": mask.float(), "labels": labels.float()}
    saved = set(safe_open(f"{folder}/model.safetensors", "pt").keys())
    for n, p in model.named_parameters():
        if p.grad is not None and n in saved:     # a tied lm_head.weight is saved (and graded) once
            ref["grad." + n] = p.grad
    save_file({k: v.contiguous() for k, v in ref.items()}, f"{folder}/reference.safetensors")
    print(name, sum(p.numel() for p in model.parameters()), "parameters,", len(saved), "saved tensors")

def decoder_main():
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForSequenceClassification)
    g = torch.Generator().manual_seed(21)
    ids = torch.randint(3, 96, (2, 9), generator=g)
    ids[1, 6:] = 0                                          # right padding (pad_token_id 0)
    mask = torch.ones(2, 9, dtype=torch.long); mask[1, 6:] = 0
    labels = ids.clone(); labels[1, 6:] = -100
    small = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, pad_token_id=0,
                 bos_token_id=1, eos_token_id=2)
    torch.manual_seed(30)
    m = LlamaForCausalLM(LlamaConfig(**small, tie_word_embeddings=False, rope_theta=10000.0))
    decoder_fixture("llama-causal", m, ids, mask, labels, causal=True)
    # Tied input and output embeddings, head_dim 16 (not hidden / heads), llama3 RoPE scaling whose
    # original context (16 positions) puts one frequency in each of its three bands.
    torch.manual_seed(31)
    cfg = LlamaConfig(**{**small, "num_key_value_heads": 1}, head_dim=16, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500.0, "factor": 4.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    m = LlamaForCausalLM(cfg)
    decoder_fixture("llama-tied-llama3", m, ids, mask, labels, causal=True)
    # Mistral's sliding window (4 positions) is shorter than the sequence (9).
    torch.manual_seed(33)
    m = MistralForCausalLM(MistralConfig(**small, sliding_window=4, head_dim=8, tie_word_embeddings=False))
    decoder_fixture("mistral-window", m, ids, mask, labels, causal=True)
    torch.manual_seed(32)
    m = Qwen2ForSequenceClassification(Qwen2Config(**small, num_labels=3, rope_theta=1000000.0))
    decoder_fixture("qwen2-sequence", m, ids, mask, torch.tensor([2, 0]), causal=False)

if __name__ == "__main__":
    decoder_main()


def generation_fixture():
    """Greedy continuations transformers' `generate` gives for the saved llama-causal model, for a
    left-padded batch: without an end token (8 new tokens each), and with the third token it
    generated for row 0 as the end token (row 0 stops there and is padded, row 1 goes on)."""
    from transformers import LlamaForCausalLM
    from safetensors.torch import save_file
    folder = f"{OUT}/llama-causal"
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([[0, 0, 5, 17, 33], [7, 61, 12, 40, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    common = dict(attention_mask=mask, do_sample=False, pad_token_id=0, max_new_tokens=8)
    free = model.generate(ids, eos_token_id=None, **common)
    eos = int(free[0, ids.shape[1] + 2])
    stopped = model.generate(ids, eos_token_id=eos, **common)
    save_file({"input_ids": ids.float(), "attention_mask": mask.float(), "free": free.float(), "stopped": stopped.float(),
               "eos": torch.tensor([float(eos)])}, f"{folder}/generation.safetensors")
    print("generation: free", free.tolist(), "eos", eos, "stopped", stopped.tolist())
