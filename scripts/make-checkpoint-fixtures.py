#!/usr/bin/env python3
"""Generates the PyTorch / Hugging Face checkpoint fixtures of Tests/FineTuneTests/Fixtures.

Needs torch, torchvision, transformers and safetensors (e.g. the /work/venv of the project):

    python scripts/make-checkpoint-fixtures.py            # write the fixtures, then verify finetune-saved
    python scripts/make-checkpoint-fixtures.py --verify   # only verify bert-tiny/finetune-saved

Everything is seeded, so a run with the same library versions writes the same tensors.

`bert-tiny/finetune-saved/` is written by FineTune, not by this script:

    FINETUNE_WRITE_FIXTURES=1 swift test --filter "Hugging Face folders/FineTune-saved folder"

rewrites it from `bert-tiny/sharded/`; the script then loads it with `transformers` and
compares the outputs with the model it saved (and the test checks that FineTune still writes
exactly those bytes). Regenerate it whenever `bert-tiny/` changes.
"""

import argparse
import collections
import io
import json
import math
import os
import pickle
import shutil
import struct
import sys
import zipfile

import torch
import torch.nn as nn

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "FineTuneTests", "Fixtures")


def path(*parts):
    return os.path.join(FIXTURES, *parts)


def fresh(*parts):
    directory = path(*parts)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    return directory


def readme(folder, text):
    with open(path(folder, "README.md"), "w") as f:
        f.write(text.strip() + "\n\nWritten by scripts/make-checkpoint-fixtures.py with torch " + torch.__version__ + ".\n")


def write_json(value, *parts):
    with open(path(*parts), "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


# MARK: torch.save state dict with every dtype, views and strides

def dtype_fixture():
    fresh("pytorch-dtypes")
    torch.manual_seed(1)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 2
    weight = torch.randn(3, 4)
    state = collections.OrderedDict()
    state["f32"] = torch.tensor([[1.5, -2.25, 3.0], [0.1, 1e-8, -7.0]])
    state["f16"] = torch.tensor([1.0, -2.5, 65504.0, 6e-8, float("inf")], dtype=torch.float16)
    state["bf16"] = torch.tensor([1.0, -3.0, 0.1, 1e30], dtype=torch.bfloat16)
    state["f64"] = torch.tensor([0.25, -1e-3, 1e10], dtype=torch.float64)
    state["i64"] = torch.tensor([-7, 123456, 2 ** 40], dtype=torch.int64)
    state["i32"] = torch.tensor([-1, 9, 2 ** 31 - 1], dtype=torch.int32)
    state["i16"] = torch.tensor([-300, 32767], dtype=torch.int16)
    state["i8"] = torch.tensor([-128, 5], dtype=torch.int8)
    state["u8"] = torch.tensor([255, 0, 7], dtype=torch.uint8)
    state["bool"] = torch.tensor([True, False, True])
    state["u16"] = torch.tensor([65535, 1], dtype=torch.uint16)     # no legacy storage class: _rebuild_tensor_v3
    state["scalar"] = torch.tensor(3.5)
    state["empty"] = torch.zeros(0, 3)
    state["transposed"] = weight.t()                                 # strides (1, 4)
    state["view_a"] = base[0]                                        # two views of one storage ...
    state["view_b"] = base[1:, 2:]                                   # ... at offset 6, strides (4, 1)
    state["param"] = nn.Parameter(torch.tensor([0.5, -0.5]))         # _rebuild_parameter
    torch.save(state, path("pytorch-dtypes", "state.pt"))
    expected = {
        key: {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "strides": list(t.stride()),
            "storage_offset": t.storage_offset(),
            # Non-finite values as strings, so any JSON reader (not only Python's) parses the file.
            "values": [v if math.isfinite(v) else str(v) for v in t.detach().float().flatten().tolist()],
        }
        for key, t in state.items()
    }
    write_json(expected, "pytorch-dtypes", "expected.json")
    torch.save({"w": torch.tensor([1.0, 2.0])}, path("pytorch-dtypes", "legacy.pt"), _use_new_zipfile_serialization=False)
    loaded = torch.load(path("pytorch-dtypes", "state.pt"), weights_only=True)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    readme("pytorch-dtypes", """
# pytorch-dtypes

- `state.pt`: `torch.save` of an OrderedDict with one tensor of every dtype FineTune converts (float32, float16
  with a subnormal and inf, bfloat16, float64, int64/32/16/8, uint8, bool, uint16 through `_rebuild_tensor_v3`),
  a scalar, an empty tensor, a transposed view (`transposed`, strides [1, 4]), two views of one storage
  (`view_a` at offset 0, `view_b` at offset 6 with strides [4, 1]) and an `nn.Parameter`.
- `expected.json`: per key the dtype, shape, strides, storage offset and the values as float32 (row-major,
  non-finite values as strings), from PyTorch.
- `legacy.pt`: the pre-1.6 format (`_use_new_zipfile_serialization=False`), which FineTune refuses with advice.
""")


# MARK: a torchvision-style ResNet made of FineTune's layers

class TinyResNet(nn.Module):
    """conv1/bn1/relu, layer1 = [BasicBlock(4, 4)], layer2 = [BasicBlock(4, 8, stride 2)], avgpool, fc."""

    def __init__(self, channels=(4, 8), num_classes=5):
        super().__init__()
        from torchvision.models.resnet import BasicBlock
        c1, c2 = channels
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(c1, c1))
        down = nn.Sequential(nn.Conv2d(c1, c2, 1, stride=2, bias=False), nn.BatchNorm2d(c2))
        self.layer2 = nn.Sequential(BasicBlock(c1, c2, stride=2, downsample=down))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c2, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet_fixture():
    from safetensors.torch import save_file
    fresh("tiny-resnet")
    torch.manual_seed(2)
    model = TinyResNet()
    model.train()
    with torch.no_grad():
        for _ in range(3):                       # move the BatchNorm statistics away from 0 / 1
            model(torch.randn(4, 3, 8, 8) * 2 + 0.5)
    model.eval()
    inputs = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        outputs = model(inputs)
    state = model.state_dict()
    torch.save(state, path("tiny-resnet", "model.pth"))
    save_file({"inputs": inputs, "outputs": outputs}, path("tiny-resnet", "reference.safetensors"))

    # The same weights as a folder of two .bin shards with a hand-written index.
    fresh("tiny-resnet", "sharded-bin")
    keys = list(state.keys())
    first = [k for k in keys if not k.startswith(("layer2.", "fc."))]
    shards = {"pytorch_model-00001-of-00002.bin": first,
              "pytorch_model-00002-of-00002.bin": [k for k in keys if k not in first]}
    weight_map = {}
    for name, shard_keys in shards.items():
        torch.save(collections.OrderedDict((k, state[k]) for k in shard_keys), path("tiny-resnet", "sharded-bin", name))
        weight_map.update({k: name for k in shard_keys})
    total = sum(t.numel() * t.element_size() for t in state.values())
    write_json({"metadata": {"total_size": total}, "weight_map": weight_map},
               "tiny-resnet", "sharded-bin", "pytorch_model.bin.index.json")
    write_json({"model_type": "tiny-resnet", "channels": [4, 8], "num_classes": 5, "in_channels": 3,
                "architectures": ["TinyResNet"], "layer_norm_eps": None},
               "tiny-resnet", "sharded-bin", "config.json")
    readme("tiny-resnet", """
# tiny-resnet

A torchvision-style ResNet built from FineTune's layers: `conv1` (3->4, 3x3, no bias), `bn1`, `relu`,
`layer1 = [BasicBlock(4, 4)]`, `layer2 = [BasicBlock(4, 8, stride 2, downsample)]`, `avgpool`, `fc` (8->5),
torchvision's `BasicBlock` (FineTune's `ResidualBlock`). BatchNorm statistics moved by three training batches.

- `model.pth`: `torch.save(model.state_dict())`, as torchvision publishes weights.
- `reference.safetensors`: `inputs` [2, 3, 8, 8] and `outputs` [2, 5] in eval mode.
- `sharded-bin/`: the same weights as two `.bin` shards (`torch.save` of parts of the state dict) with a
  hand-written `pytorch_model.bin.index.json` and a `config.json` (`channels`, `num_classes`, `in_channels`,
  `layer_norm_eps: null`) the tests build the model from.
""")


# MARK: a transformers model: sharded safetensors, pytorch_model.bin

def bert_config():
    from transformers import BertConfig
    return BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=8, type_vocab_size=2)


def bert_fixture():
    from safetensors.torch import save_file
    from transformers import BertModel
    fresh("bert-tiny")
    torch.manual_seed(3)
    model = BertModel(bert_config()).eval()
    model.save_pretrained(path("bert-tiny", "sharded"), max_shard_size=1500)
    os.makedirs(path("bert-tiny", "bin"))
    model.config.save_pretrained(path("bert-tiny", "bin"))
    torch.save(model.state_dict(), path("bert-tiny", "bin", "pytorch_model.bin"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path("bert-tiny", "reference.safetensors"))
    readme("bert-tiny", """
# bert-tiny

A randomly initialised `transformers` `BertModel` (vocabulary 32, hidden size 8, 2 layers, 2 heads,
intermediate size 16, 8 positions), 1624 parameters.

- `sharded/`: `save_pretrained(max_shard_size=1500)`: `config.json`, five safetensors shards and
  `model.safetensors.index.json`.
- `bin/`: `config.json` beside `pytorch_model.bin` written with `torch.save(model.state_dict())`.
- `reference.safetensors`: the state dict saved with `safetensors.torch.save_file`.
- `finetune-saved/`: written by FineTune (`PretrainedFolder.write`, 2500-byte shards) from `sharded/`, by the
  test "FineTune-saved folder" with `FINETUNE_WRITE_FIXTURES=1`; the script loads it with
  `BertModel.from_pretrained` and compares the outputs with `sharded/` (`--verify`).
""")


def verify_finetune_saved():
    """Loads the FineTune-written folder with transformers and compares it with the model it came from."""
    from transformers import BertModel
    saved = path("bert-tiny", "finetune-saved")
    if not os.path.isdir(saved):
        print("bert-tiny/finetune-saved is missing: run the Swift test with FINETUNE_WRITE_FIXTURES=1, then --verify")
        return False
    original = BertModel.from_pretrained(path("bert-tiny", "sharded")).eval()
    loaded, info = BertModel.from_pretrained(saved, output_loading_info=True)
    loaded.eval()
    problems = {k: v for k, v in info.items() if v}
    torch.manual_seed(4)
    ids = torch.randint(0, 32, (2, 6))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        reference = original(input_ids=ids, attention_mask=mask)
        output = loaded(input_ids=ids, attention_mask=mask)
    worst = max((output.last_hidden_state - reference.last_hidden_state).abs().max().item(),
                (output.pooler_output - reference.pooler_output).abs().max().item())
    scale = max(1.0, reference.last_hidden_state.abs().max().item())
    files = sorted(os.listdir(saved))
    ok = not problems and worst <= 1e-4 * scale
    print(f"transformers loaded bert-tiny/finetune-saved ({', '.join(files)}): loading info {problems or 'clean'}, "
          f"max |output - reference| = {worst:.3g} (limit {1e-4 * scale:.3g}): {'OK' if ok else 'FAILED'}")
    return ok


# MARK: pickles torch.load(weights_only=True) accepts or refuses

def archive(pickle_bytes, storages=()):
    """A torch.save-style zip: archive/data.pkl, byteorder, version, data/<key> records."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for key, data in storages:
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
    return buffer.getvalue()


def saved(obj, **kwargs):
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def unicode(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


FLOATS = struct.pack("<3f", 1.0, 2.0, 3.0)
# ("storage", torch.FloatStorage, "0", "cpu", 3) loaded by persistent id
STORAGE = b"(" + unicode("storage") + b"ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu") + b"K\x03tQ"


def pickle_cases():
    """Each case: a file, what FineTune must do, and (measured below) what torch.load does."""
    import numpy
    torch.manual_seed(5)
    t = torch.randn(2, 2)
    subclass_attrs = torch.ones(2)
    subclass_attrs.note = "kept by torch, ignored by FineTune"
    cases = {
        # Accepted by torch: FineTune reads these keys.
        "nested-checkpoint": (saved({"model": {"fc.weight": t, "fc.bias": t[0]}, "epoch": 3,
                                     "optimizer": {"state": {0: {"momentum_buffer": t * 2}},
                                                   "param_groups": [{"lr": 0.1, "params": [0]}]}}),
                              {"keys": ["model.fc.bias", "model.fc.weight", "optimizer.state.0.momentum_buffer"]}),
        "allowed-objects": (saved({"w": t, "counter": collections.Counter(a=1), "tags": {"x"}, "blob": b"\x00\xff",
                                   "device": torch.device("cpu"), "complex": complex(1, 2), "size": torch.Size([2, 3]),
                                   "bytes": bytearray(b"ab")}),
                            {"keys": ["w"]}),
        "tensor-with-attributes": (saved({"t": subclass_attrs}), {"keys": ["t"]}),
        "legacy-tensor-build": (archive(b"\x80\x02}q\x00" + unicode("t") + b"ctorch\nTensor\nq\x01)\x81q\x02("
                                        + STORAGE + b"K\x01K\x02\x85K\x01\x85tbs.", [("0", FLOATS)]),
                                {"keys": ["t"], "values": {"t": [2.0, 3.0]}}),
        "parameter-newobj": (archive(b"\x80\x02}q\x00" + unicode("p") + b"ctorch.nn.parameter\nParameter\n"
                                     + b"ctorch._utils\n_rebuild_tensor_v2\n(" + STORAGE
                                     + b"K\x00K\x03\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rt" + b"R\x88\x86\x81s.",
                                     [("0", FLOATS)]),
                             {"keys": ["p"], "values": {"p": [1.0, 2.0, 3.0]}}),
        "complex-dtype": (saved({"c": torch.tensor([1 + 2j]), "w": t}), {"keys": ["c", "w"], "unsupported": ["c"]}),
        "float8-dtype": (saved({"f8": torch.zeros(2, dtype=torch.float8_e4m3fn)}), {"keys": ["f8"], "unsupported": ["f8"]}),
        # Accepted by torch, but not tensors FineTune represents.
        "sparse-tensor": (saved({"s": torch.eye(2).to_sparse()}), {"error": "unreadable", "detail": "sparse tensor"}),
        # Refused by torch.
        "pickled-module": (saved(nn.Linear(2, 2)),
                           {"error": "disallowedGlobal", "detail": "torch.nn.modules.linear.Linear"}),
        "os-system": (archive(b"\x80\x02cos\nsystem\n" + unicode("echo hi") + b"\x85R."),
                      {"error": "disallowedGlobal", "detail": "os.system"}),
        "builtins-eval": (archive(b"\x80\x02c__builtin__\neval\n" + unicode("1") + b"\x85R."),
                          {"error": "disallowedGlobal", "detail": "builtins.eval"}),
        "defaultdict": (saved({"w": t, "d": collections.defaultdict(list)}),
                        {"error": "disallowedGlobal", "detail": "collections.defaultdict"}),
        "numpy-array": (saved({"a": numpy.zeros(2)}), {"error": "disallowedGlobal"}),
        "protocol-4": (saved({"w": t}, pickle_protocol=4), {"error": "disallowedOpcode", "detail": "FRAME (0x95)"}),
        "stack-global": (archive(b"\x80\x02" + unicode("os") + unicode("system") + b"\x93."),
                         {"error": "disallowedOpcode", "detail": "STACK_GLOBAL (0x93)"}),
        "inst-opcode": (archive(b"\x80\x02(i__builtin__\nset\n."), {"error": "disallowedOpcode", "detail": "INST (0x69)"}),
        "append-to-dict": (archive(b"\x80\x02}K\x01a."), {"error": "unreadable"}),
        "build-plain-dict": (archive(b"\x80\x02}}b."), {"error": "unreadable"}),
        "missing-memo": (archive(b"\x80\x02h\x07."), {"error": "unreadable"}),
        "int-persistent-id": (archive(b"\x80\x02K\x01Q."), {"error": "unreadable"}),
    }
    fresh("pytorch-pickles")
    manifest = {}
    for name, (data, finetune) in cases.items():
        with open(path("pytorch-pickles", name + ".pt"), "wb") as f:
            f.write(data)
        try:
            torch.load(io.BytesIO(data), weights_only=True)
            torch_result = {"accepts": True}
        except Exception as error:                   # noqa: BLE001 - any refusal counts
            lines = [line for line in str(error).split("\n") if "WeightsUnpickler error" in line] or [str(error)]
            torch_result = {"accepts": False, "message": lines[0].strip()[:300]}
        manifest[name] = {"torch": torch_result, "finetune": finetune}
        # Only the sparse tensor is accepted by torch and still refused by FineTune.
        expected_by_torch = "error" not in finetune or name == "sparse-tensor"
        if torch_result["accepts"] != expected_by_torch:
            sys.exit(f"case {name}: torch {'accepts' if torch_result['accepts'] else 'refuses'} it, "
                     f"the fixture expects the opposite ({torch_result.get('message', '')})")
    write_json(manifest, "pytorch-pickles", "cases.json")
    readme("pytorch-pickles", """
# pytorch-pickles

Small `torch.save`-style archives whose pickles `torch.load(weights_only=True)` accepts or refuses:
state dicts nested in checkpoints, allowlisted objects (Counter, set, bytes, torch.device, complex,
torch.Size), tensors with Python attributes, the legacy `Tensor` + BUILD form, complex and float8 tensors,
a sparse tensor, a pickled `nn.Linear`, `os.system`, `builtins.eval`, `defaultdict`, a NumPy array,
protocol 4 (FRAME), STACK_GLOBAL, INST, and structurally invalid pickles.

- `cases.json`: per file what torch did (`torch.accepts`, its message) and what FineTune must do
  (`finetune.keys`, or `finetune.error` with the global or opcode it names).
- `allowed-globals.json`: PyTorch's `_get_allowed_globals()`, which FineTune's allowlist must equal.
""")
    from torch._weights_only_unpickler import _get_allowed_globals
    write_json({"torch": torch.__version__, "allowed_globals": sorted(_get_allowed_globals().keys())},
               "pytorch-pickles", "allowed-globals.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", action="store_true", help="only verify bert-tiny/finetune-saved with transformers")
    args = parser.parse_args()
    if not args.verify:
        keep = path("bert-tiny", "finetune-saved")
        kept = path(".finetune-saved.kept")    # outside bert-tiny/, which is rewritten
        if os.path.isdir(keep):
            shutil.move(keep, kept)
        dtype_fixture()
        resnet_fixture()
        bert_fixture()
        pickle_cases()
        if os.path.isdir(kept):
            shutil.move(kept, keep)
        print(f"wrote fixtures with torch {torch.__version__}")
    sys.exit(0 if verify_finetune_saved() or not args.verify else 1)


if __name__ == "__main__":
    main()
