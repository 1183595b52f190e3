#!/usr/bin/env python3
"""Exports the ONNX fixtures of tests/onnx/ (dev tool; CI never runs it).

Needs torch, torchvision, onnx, onnxruntime and safetensors from the package index:

    python3 tools/export_onnx.py tests/onnx

For every family rsp imports from ONNX it builds a tiny random-weight model with
torchvision's own modules (so the module names and the wiring are torchvision's),
exports it with both exporters of torch.onnx:

- `<name>.legacy.onnx`: the TorchScript exporter (`dynamo=False,
  do_constant_folding=False`), batch norm kept as BatchNormalization nodes;
- `<name>.dynamo.onnx` (+ `<name>.dynamo.onnx.data` when the exporter writes its
  weights apart): the default exporter, which folds batch norm into convolutions (its
  per-node debugging metadata dropped but the `namespace`, to keep the files small);

and writes `<name>.expected.safetensors` with the input, PyTorch's logits and the
gradient of the top logit with respect to the input. Every export is run by
onnxruntime and must match PyTorch's logits to 1e-5 (relative to their largest
magnitude), else the tool fails.

Models rsp must refuse (grouped convolution, ReLU6, SiLU) are exported too
(`refuse_*.onnx`, legacy exporter, no expectations), and `torchvision_state_dicts.txt`
lists the tensor names and shapes of every torchvision classification architecture.

The in-repo golden cases' models (tests/golden/*.safetensors, weights under `model.`)
are exported with the legacy exporter, batch norm kept, to `tests/golden/<case>.onnx`;
their initializers are then stored as ONNX external data that points into the golden
safetensors file itself (each tensor's byte range), so the graph costs a few KB and the
weights are the golden file's bytes.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file
from torchvision.models.densenet import DenseNet
from torchvision.models.googlenet import BasicConv2d, Inception
from torchvision.models.resnet import BasicBlock
from torchvision.models.squeezenet import Fire
from torchvision.models.vgg import VGG, make_layers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benches"))
import torch_rsp  # noqa: E402  (the golden cases' PyTorch models)


def vgg_bn():
    m = VGG(make_layers([8, "M", 16, "M"], batch_norm=True), num_classes=10, init_weights=True)
    m.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    m.classifier = nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(True), nn.Dropout(),
        nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(),
        nn.Linear(32, 10))
    return m, 32


def resnet():
    return torch_rsp.narrow_resnet(BasicBlock, [1, 1, 1, 1], 8, [8, 16, 16, 16], 10), 32


def densenet():
    return DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2,
                    num_classes=10), 32


class TinyInception(nn.Module):
    """GoogLeNet's stem and inception blocks at toy widths: BasicConv2d (batch norm
    eps 0.001), ceil-mode max pools, four-branch concatenations."""

    def __init__(self):
        super().__init__()
        self.conv1 = BasicConv2d(3, 8, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(8, 4, 4, 8, 2, 4, 4)
        self.inception3b = Inception(20, 8, 4, 8, 2, 4, 4)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(24, 8, 4, 8, 2, 4, 4)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def inception():
    return TinyInception(), 33


class TinySqueezeNet(nn.Module):
    """SqueezeNet 1.1's layout at toy widths: Fire modules, ceil-mode max pools and
    logits from a 1×1 convolution, ReLU and a global average pool."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 4, 8, 8), Fire(16, 4, 8, 8),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 8, 16, 16))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Conv2d(32, 10, kernel_size=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet():
    return TinySqueezeNet(), 48


class TinyAlexNet(nn.Module):
    """torchvision AlexNet's layout (11×11 stride-4 and 5×5 convolutions, 3×3 stride-2
    pools, dropout classifier) at toy widths."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(8, 16, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(16, 16, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(16, 32), nn.ReLU(inplace=True),
            nn.Dropout(p=0.5), nn.Linear(32, 32), nn.ReLU(inplace=True),
            nn.Linear(32, 10))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet():
    return TinyAlexNet(), 79


def densenet_fresh():
    """DenseNet as torchvision initialises it (every batch norm's weight 1, bias 0):
    the legacy exporter stores the equal tensors once and copies them with Identity
    nodes."""
    return densenet()


FAMILIES = {
    "vgg_bn": vgg_bn,
    "densenet_fresh": densenet_fresh,
    "resnet": resnet,
    "densenet": densenet,
    "inception": inception,
    "squeezenet": squeezenet,
    "alexnet": alexnet,
}


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def activation_net(act):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), act, nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


REFUSE = {
    "refuse_grouped": lambda: Grouped(),
    "refuse_relu6": lambda: activation_net(nn.ReLU6()),
    "refuse_silu": lambda: activation_net(nn.SiLU()),
}


def randomise_batch_norm(model, gen):
    """Non-trivial running statistics, so batch norm is not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def export_legacy(model, x, path):
    torch.onnx.export(model, (x,), path, dynamo=False, do_constant_folding=False,
                      input_names=["input"], output_names=["logits"], opset_version=17)


def export_dynamo(model, x, path):
    torch.onnx.export(model, (x,), path, dynamo=True, external_data=True)
    # The exporter's debugging metadata (FX node text, class hierarchies) is most of a
    # small model's file; only each node's `namespace` (its module path) is kept.
    m = onnx.load(path, load_external_data=False)
    for node in m.graph.node:
        keep = [(p.key, p.value) for p in node.metadata_props if p.key == "namespace"]
        del node.metadata_props[:]
        for k, v in keep:
            e = node.metadata_props.add()
            e.key, e.value = k, v
    onnx.save(m, path)


def check_with_onnxruntime(path, x, logits):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    err = np.abs(got - logits.numpy()).max() / np.abs(logits.numpy()).max()
    if err > 1e-5:
        raise SystemExit(f"{path}: onnxruntime's logits differ from PyTorch's by {err:.2e}")
    return err


def export_family(name, build, out):
    torch.manual_seed(sum(map(ord, name)))
    model, size = build()
    gen = torch.Generator().manual_seed(7)
    if not name.endswith("_fresh"):
        randomise_batch_norm(model, gen)
    model = model.float().eval()
    x = torch.randn(1, 3, size, size, generator=gen)
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    top = int(logits.argmax())
    (grad,) = torch.autograd.grad(logits[0, top], xg)
    logits = logits.detach()
    save_file({"input": x.contiguous(), "logits": logits.contiguous(),
               "grad": grad.contiguous(), "target": torch.tensor([top], dtype=torch.int64)},
              os.path.join(out, f"{name}.expected.safetensors"))
    report = {}
    exporters = [("legacy", export_legacy), ("dynamo", export_dynamo)]
    # The dynamo exporter folds batch norm away: a fresh init changes nothing there.
    for kind, export in exporters[:1] if name.endswith("_fresh") else exporters:
        path = os.path.join(out, f"{name}.{kind}.onnx")
        export(model, x, path)
        report[kind] = check_with_onnxruntime(path, x, logits)
    return report


def external_into_safetensors(onnx_path, st_path):
    """Points every initializer of `onnx_path` at its bytes inside `st_path` (weights
    stored under `model.<name>` in float32): ONNX external data with offsets."""
    raw = open(st_path, "rb").read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    m = onnx.load(onnx_path)
    for t in m.graph.initializer:
        entry = header.get("model." + t.name)
        if entry is None:
            continue
        arr = onnx.numpy_helper.to_array(t)
        begin, end = entry["data_offsets"]
        stored = np.frombuffer(raw[8 + hlen + begin:8 + hlen + end], dtype="<f4")
        if entry["dtype"] != "F32" or not np.array_equal(stored, arr.reshape(-1)):
            continue
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in [("location", os.path.basename(st_path)),
                     ("offset", str(8 + hlen + begin)), ("length", str(end - begin))]:
            e = t.external_data.add()
            e.key, e.value = k, v
    onnx.save(m, onnx_path)


def export_golden(golden_dir):
    for case in ["vgg_tiny", "resnet_basic_narrow", "resnet_bottleneck_narrow"]:
        st = os.path.join(golden_dir, f"{case}.safetensors")
        sd, tensors = torch_rsp.load_state_dict(st)
        model = torch_rsp.model_from_state_dict(sd)
        x = tensors["input"].float()
        path = os.path.join(golden_dir, f"{case}.onnx")
        export_legacy(model, x, path)
        external_into_safetensors(path, st)
        err = check_with_onnxruntime(path, x, tensors["logits"].float())
        print(f"{case}: onnxruntime vs golden logits {err:.1e}")


def state_dict_listing(path):
    """Every torchvision classification architecture's state dict, names and shapes
    (no values), front-coded: `# arch`, then per tensor `<prefix length shared with the
    previous name> <rest of the name> <shape as AxBxC>`. tests/gpu/bad_weights.rs checks
    that rsp builds each exactly or refuses it."""
    import warnings
    warnings.filterwarnings("ignore")
    lines = [f"# torchvision {torchvision.__version__}: tools/export_onnx.py"]
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            with torch.device("meta"):
                sd = torchvision.models.get_model(name, weights=None).state_dict()
        except NotImplementedError:  # builders that compute on tensors (RegNet)
            sd = torchvision.models.get_model(name, weights=None).state_dict()
        lines.append(f"# {name}")
        prev = ""
        for key, value in sd.items():
            if key.endswith("num_batches_tracked"):
                continue
            p = 0
            while p < min(len(key), len(prev)) and key[p] == prev[p]:
                p += 1
            lines.append(f"{p} {key[p:]} {'x'.join(map(str, value.shape))}")
            prev = key
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="folder for the family fixtures (tests/onnx)")
    ap.add_argument("--golden", default="tests/golden", help="the in-repo golden cases")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, build in FAMILIES.items():
        report = export_family(name, build, args.out)
        print(f"{name}: onnxruntime vs PyTorch " +
              ", ".join(f"{k} {v:.1e}" for k, v in report.items()))
    for name, build in REFUSE.items():
        torch.manual_seed(1)
        model = build().eval()
        export_legacy(model, torch.randn(1, 3, 16, 16), os.path.join(args.out, f"{name}.onnx"))
    export_golden(args.golden)
    state_dict_listing(os.path.join(args.out, "torchvision_state_dicts.txt"))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
