#!/usr/bin/env python3
"""Writes Tests/FineTuneTests/Fixtures/peft-modules-to-save: LoRA adapters made by Hugging Face PEFT
with a trained head (modules_to_save) and trained biases (bias="lora_only" and bias="all").

Run from the repository root with torch, peft and safetensors installed:
    python3 scripts/make-peft-fixtures.py
"""
import json, os
import torch, torch.nn as nn
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

OUT = "Tests/FineTuneTests/Fixtures/peft-modules-to-save"

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 4)
        self.head = nn.Linear(4, 3)
    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

def perturb_trainables(model, seed):
    """Stands in for training: every trainable tensor gets a random change, so none is at its init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)

def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    base = MLP()
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, f"{OUT}/base.safetensors")
    inputs = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    reference = {"inputs": inputs}
    variants = {
        # The head trained next to LoRA (modules_to_save), biases of the LoRA layers trained.
        "head-lora-only": dict(modules_to_save=["head"], bias="lora_only"),
        # Every bias trained, no modules_to_save.
        "bias-all": dict(modules_to_save=None, bias="all"),
        # Only the head trained next to LoRA.
        "head-none": dict(modules_to_save=["head"], bias="none"),
    }
    for seed, (name, kwargs) in enumerate(variants.items()):
        model = MLP()
        model.load_state_dict(base.state_dict())
        config = LoraConfig(r=2, lora_alpha=4, target_modules=["fc1", "fc2"], **kwargs)
        peft_model = get_peft_model(model, config)
        perturb_trainables(peft_model, seed + 10)
        peft_model.eval()
        with torch.no_grad():
            reference[f"outputs_{name.replace('-', '_')}"] = peft_model(inputs)
        peft_model.save_pretrained(f"{OUT}/{name}")
        # Keep the fixture small and deterministic: drop PEFT's README.
        readme = f"{OUT}/{name}/README.md"
        if os.path.exists(readme):
            os.remove(readme)
    save_file({k: v.contiguous() for k, v in reference.items()}, f"{OUT}/reference.safetensors")
    with open(f"{OUT}/README.md", "w") as f:
        f.write("# peft-modules-to-save\n\nMade by scripts/make-peft-fixtures.py with PEFT "
                + __import__("peft").__version__ + " and torch " + torch.__version__ + ".\n\n"
                "- `base.safetensors`: the base MLP (`fc1` Linear(6, 5), ReLU, `fc2` Linear(5, 4), ReLU, `head` Linear(4, 3)).\n"
                "- `head-lora-only/`: LoRA r=2 alpha=4 on fc1, fc2; `modules_to_save=[\"head\"]`; `bias=\"lora_only\"`.\n"
                "- `bias-all/`: the same LoRA, `bias=\"all\"`, no modules_to_save.\n"
                "- `head-none/`: the same LoRA, `modules_to_save=[\"head\"]`, `bias=\"none\"`.\n"
                "- `reference.safetensors`: `inputs` [5, 6] and each variant's eval-mode outputs `outputs_<variant>` [5, 3].\n"
                "Every trainable tensor was changed randomly before saving, so each one matters.\n")

if __name__ == "__main__":
    main()
