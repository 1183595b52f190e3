#!/usr/bin/env python3
"""RSP the way a PyTorch user would write it: a timing baseline for the `rsp` engine.

Dev tool only; CI does not run it and the crate does not depend on it.

This is a plain PyTorch implementation of Relative Sectional Propagation (Nam, Choi,
Lee, AAAI 2021), written from docs/method.md (sections 1-4), which also pins down the
details the reference outputs depend on. Gradients come from autograd /
torch.nn.grad, the way a PyTorch user would get them; every rule is applied per image
(the channel attribution maps of a batch are built with a grouped convolution, one
group per image, so images never mix).

Modes
-----
Timing (default): on CUDA if available, else CPU, float32 (TF32 off unless --tf32),
torchvision weights=None models in eval mode, random input U(-2, 2) like `rsp bench`.
One timed run = host->device copy of the batch, forward pass, head gradient and initial
relevance, the full RSP backward to the pixels, and the device->host copy of the
[N,3,H,W] relevance; torch.cuda.synchronize() before and after. Prints the median over
--runs (after --warmup untimed runs; sorted(times)[runs // 2], as `rsp bench` does) per
batch and per image, and the peak of
torch.cuda.max_memory_allocated. With --rsp-bin PATH it also runs
`PATH bench --model M --size S --batch N --runs R` and prints one summary line with both
times and the ratio pytorch/rsp (`rsp bench` always uses --init gradcam). --lrp
additionally times Zennit LRP (the engine's LRP baseline rules, docs/method.md section 6)
if zennit is importable.

    python3 benches/torch_rsp.py --model vgg16 --size 224 --batch 1 --runs 5 \\
        --rsp-bin target/release/rsp

Golden check: --check-golden DIR runs every golden case in DIR (each *.safetensors, or
only those named by --cases) in float32 on CPU for both initialisations and prints
max|impl-ref|/max|ref| for the logits, the initial relevance, every stored per-layer
relevance and the final map. PASS means every tensor is within 1e-4 * max|ref|
elementwise and its sum within 1e-4 * sum|ref| (the tests' tolerance), the predicted
classes match and every stored per-layer tensor is produced; exit status 1 on any FAIL.
This validates the reference that the timing mode measures and the generator below.

    python3 benches/torch_rsp.py --check-golden tests/golden
    python3 benches/torch_rsp.py --check-golden /path/to/full-size/golden

Golden generator: --make-golden DIR writes the narrow ResNet cases of tests/golden
(NARROW_CASES below: random weights from fixed seeds, the input docs/synth/ring_star.jpg)
as DIR/<case>.safetensors plus a <case>.json sidecar, in the tensor layout of the
published golden files, with a float64 rerun of every output for the sidecar's error
columns. Run it only after --check-golden passes on the published cases;
tests/golden/README.md has the exact command.

Needs torch, torchvision and safetensors (--make-golden also numpy and Pillow).
"""

import argparse
import contextlib
import math
import os
import re
import subprocess
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG, make_layers

EPS = 1e-9
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------

def sdiv(a, b):
    """a / b where b != 0, exactly 0 where b == 0."""
    nonzero = b != 0
    return torch.where(nonzero, a / torch.where(nonzero, b, torch.ones_like(b)), torch.zeros_like(a))


def per_image_sum(t):
    return t.sum(dim=tuple(range(1, t.dim())), keepdim=True)


def per_image_max(t):
    return t.amax(dim=tuple(range(1, t.dim())), keepdim=True)


def per_image_min(t):
    return t.amin(dim=tuple(range(1, t.dim())), keepdim=True)


def pos(t):
    return t.clamp(min=0)


def neg(t):
    return (-t).clamp(min=0)


# ---------------------------------------------------------------------------------
# Per-image convolution helpers (grouped over the batch: group n = image n)
# ---------------------------------------------------------------------------------

def amp_cast(*ts):
    """Under autocast, the operands of the explicit gradient ops (conv2d_weight,
    conv2d_input), which autocast does not cover, in its dtype, as it would cast a
    convolution's; otherwise unchanged."""
    dev = ts[0].device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        return [t.to(dt) for t in ts]
    return list(ts)


def wgrad(conv, x, s):
    """Channel attribution maps: wgrad(x, S) per image -> [N*C_out, C_in, kh, kw]."""
    x, s = amp_cast(x, s)
    n, cin, h, w = x.shape
    cout = s.shape[1]
    return torch.nn.grad.conv2d_weight(
        x.reshape(1, n * cin, h, w), (n * cout, cin) + tuple(conv.kernel_size),
        s.reshape(1, n * cout, s.shape[2], s.shape[3]),
        stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=n)


def conv_per_image(conv, x, g):
    """conv(x, G) with each image's own G (no bias) -> [N, C_out, h, w]."""
    n, cin, h, w = x.shape
    y = F.conv2d(x.reshape(1, n * cin, h, w), g, stride=conv.stride, padding=conv.padding,
                 dilation=conv.dilation, groups=n)
    return y.reshape(n, -1, y.shape[2], y.shape[3])


def convT_per_image(conv, s, g, x_shape):
    """convT(S, G) with each image's own G -> shaped like the conv input."""
    n, cin, h, w = x_shape
    s, g = amp_cast(s, g)
    s = s.reshape(1, -1, s.shape[2], s.shape[3])
    y = torch.nn.grad.conv2d_input((1, n * cin, h, w), g, s, stride=conv.stride,
                                   padding=conv.padding, dilation=conv.dilation, groups=n)
    return y.reshape(x_shape)


# ---------------------------------------------------------------------------------
# RSP layer rules (docs/method.md section 3). Each maps R at the output to R at the input.
# ---------------------------------------------------------------------------------

def rsp_conv(conv, X, R):
    """Dispatch: first layer (3 input channels) z^B, else the sectional rule."""
    if conv.groups != 1:
        raise ValueError("grouped convolutions are not supported")
    if X.shape[1] == 3:
        return rsp_first_conv(conv, X, R)
    x = pos(X)

    def section(r):
        g = wgrad(conv, x, r)                           # purging: this section's units only
        z = conv_per_image(conv, x, g) * (r != 0)       # relative contributions
        return x * convT_per_image(conv, sdiv(r, z), g, x.shape)

    c = section(pos(R)) - section(neg(R))
    if tuple(conv.kernel_size) == (1, 1):
        return c
    c = 2 * c
    live = c != 0
    shift = sdiv(per_image_sum(R), per_image_sum(live).to(R.dtype))
    return c - shift * live


def rsp_first_conv(conv, X, R):
    """Bounded-input (z^B) rule on the real weights, bounds = min/max of each image."""
    w = conv.weight
    w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
    low = per_image_min(X).expand_as(X)
    high = per_image_max(X).expand_as(X)
    kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
    z = F.conv2d(X, w, **kw) - F.conv2d(low, w_pos, **kw) - F.conv2d(high, w_neg, **kw)
    s = sdiv(R, z)

    def convT(weight):
        return torch.nn.grad.conv2d_input(X.shape, *amp_cast(weight, s), **kw)

    return X * convT(w) - low * convT(w_pos) - high * convT(w_neg)


def rsp_maxpool(pool, X, R):
    """Winner takes all on x + 1e-9 (first maximum of the window wins)."""
    x = X + EPS
    _, idx = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                          ceil_mode=pool.ceil_mode, return_indices=True)
    n, c, h, w = X.shape
    out = torch.zeros(n, c, h * w, dtype=R.dtype, device=R.device)
    out.scatter_add_(2, idx.reshape(n, c, -1), R.reshape(n, c, -1))
    return out.reshape(X.shape)


def rsp_batchnorm(X, R):
    """Identity where the BN input is non-zero."""
    return R * (X != 0)


def rsp_add(a, b, R):
    """out = a + b: split R in proportion to pos(a) + 1e-9 and pos(b) + 1e-9."""
    a1, b1 = pos(a) + EPS, pos(b) + EPS
    s = R / (a1 + b1)
    return a1 * s, b1 * s


# ---------------------------------------------------------------------------------
# Model wrappers: forward pass that keeps the inputs of every layer on the path,
# the head (explanation layer -> logits), and the RSP walk back to the pixels.
# ---------------------------------------------------------------------------------

class VggRsp:
    """torchvision VGG: explanation layer = last ReLU before the last max pool."""

    def __init__(self, model):
        self.model = model
        feats = list(model.features)
        last_pool = max(i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d))
        self.a_index = max(i for i, m in enumerate(feats[:last_pool]) if isinstance(m, nn.ReLU))

    def forward_features(self, x):
        saved = []
        for m in self.model.features[:self.a_index + 1]:
            saved.append(x)
            x = m(x)
        return x, saved

    def head(self, a):
        m = self.model
        y = m.features[self.a_index + 1:](a)
        y = torch.flatten(m.avgpool(y), 1)
        return m.classifier(y)

    def rsp(self, saved, R, record=None):
        for i in range(self.a_index, -1, -1):
            m, X = self.model.features[i], saved[i]
            if isinstance(m, nn.Conv2d):
                R = rsp_conv(m, X, R)
            elif isinstance(m, nn.MaxPool2d):
                R = rsp_maxpool(m, X, R)
            elif isinstance(m, nn.BatchNorm2d):
                R = rsp_batchnorm(X, R)
            elif not isinstance(m, (nn.ReLU, nn.Dropout)):
                raise ValueError(f"no RSP rule for features.{i} ({type(m).__name__})")
            if record is not None:
                record[f"features.{i}"] = R
        return R


class ResNetRsp:
    """torchvision ResNet: explanation layer = output of layer4."""

    def __init__(self, model):
        self.model = model

    @staticmethod
    def block_forward(blk, x):
        t = {"conv1": x}
        o = blk.conv1(x)
        t["bn1"] = o
        o = blk.relu(blk.bn1(o))
        t["conv2"] = o
        o = blk.conv2(o)
        t["bn2"] = o
        o = blk.bn2(o)
        if isinstance(blk, Bottleneck):
            o = blk.relu(o)
            t["conv3"] = o
            o = blk.conv3(o)
            t["bn3"] = o
            o = blk.bn3(o)
        if blk.downsample is not None:
            t["ds.0"] = x
            d = blk.downsample[0](x)
            t["ds.1"] = d
            skip = blk.downsample[1](d)
        else:
            skip = x
        t["add"] = (o, skip)
        return blk.relu(o + skip), t

    def forward_features(self, x):
        m = self.model
        saved = {"conv1": x}
        x = m.conv1(x)
        saved["bn1"] = x
        x = m.relu(m.bn1(x))
        saved["maxpool"] = x
        x = m.maxpool(x)
        for li in range(1, 5):
            for bi, blk in enumerate(getattr(m, f"layer{li}")):
                x, saved[f"layer{li}.{bi}"] = self.block_forward(blk, x)
        return x, saved

    def head(self, a):
        return self.model.fc(torch.flatten(self.model.avgpool(a), 1))

    @staticmethod
    def block_rsp(blk, t, R, name, record):
        def rec(key, value):
            if record is not None:
                record[f"{name}.{key}" if key else name] = value

        rec("relu3" if isinstance(blk, Bottleneck) else "relu2", R)
        ra, rb = rsp_add(*t["add"], R)
        rec("add.0", ra)
        rec("add.1", rb)
        r = ra
        convs = ["conv3", "conv2", "conv1"] if isinstance(blk, Bottleneck) else ["conv2", "conv1"]
        for conv_name in convs:
            k = conv_name[-1]
            r = rsp_batchnorm(t[f"bn{k}"], r)
            rec(f"bn{k}", r)
            r = rsp_conv(getattr(blk, conv_name), t[conv_name], r)
            rec(conv_name, r)
            if conv_name != "conv1":
                rec(f"relu{int(k) - 1}", r)          # ReLU before this conv: identity
        if blk.downsample is not None:
            rb = rsp_batchnorm(t["ds.1"], rb)
            rec("downsample.1", rb)
            rb = rsp_conv(blk.downsample[0], t["ds.0"], rb)
            rec("downsample.0", rb)
            rec("downsample", rb)
        out = r + rb
        rec("", out)
        return out

    def rsp(self, saved, R, record=None):
        m = self.model
        for li in range(4, 0, -1):
            layer = getattr(m, f"layer{li}")
            for bi in range(len(layer) - 1, -1, -1):
                name = f"layer{li}.{bi}"
                R = self.block_rsp(layer[bi], saved[name], R, name, record)
            if record is not None:
                record[f"layer{li}"] = R
        R = rsp_maxpool(m.maxpool, saved["maxpool"], R)
        if record is not None:
            record["maxpool"] = R
            record["relu"] = R
        R = rsp_batchnorm(saved["bn1"], R)
        if record is not None:
            record["bn1"] = R
        R = rsp_conv(m.conv1, saved["conv1"], R)
        if record is not None:
            record["conv1"] = R
        return R


def wrap(model):
    if isinstance(model, VGG):
        return VggRsp(model)
    if isinstance(model, ResNet):
        return ResNetRsp(model)
    raise ValueError(f"unsupported model class {type(model).__name__}")


# ---------------------------------------------------------------------------------
# Initial relevance (docs/method.md section 2)
# ---------------------------------------------------------------------------------

def class_grads(logits, a, classes):
    """d logit[n, classes[n, k]] / dA for every k, per image (autograd)."""
    grads = []
    for k in range(classes.shape[1]):
        y = logits.gather(1, classes[:, k:k + 1]).sum()
        (g,) = torch.autograd.grad(y, a, retain_graph=k + 1 < classes.shape[1])
        grads.append(g)
    return grads


def init_gradcam(a, g):
    cam = a * g.mean(dim=(2, 3), keepdim=True)
    mx = per_image_max(cam)
    bad = mx <= 0
    if bool(bad.any()):
        warnings.warn("Grad-CAM map has no positive entry; normalising by max|cam| instead")
    return cam / torch.where(bad, per_image_max(cam.abs()), mx + EPS)


def init_comparative(a, grads):
    k = len(grads)
    cams = []
    for g in grads:
        cam = a * g.mean(dim=(2, 3), keepdim=True)
        cams.append(cam / (per_image_max(cam) + EPS))
    d = (k - 1) * cams[0]
    for cam in cams[1:]:
        d = d - cam
    p = pos(d)
    p = p / (per_image_sum(p) + EPS)
    n = neg(d)
    n = sdiv(n, per_image_max(n))                 # 0 when D has no negative entry
    n = n / (per_image_sum(n) + EPS) * per_image_sum(p)
    s = (p - n).sum(dim=1, keepdim=True)          # collapse channels -> [N,1,h,w]
    target = s > 0
    sp = s * target
    sp = 2 * sp / (per_image_sum(sp) + EPS)
    sn = s * ~target
    sn = sn / (per_image_sum(sn) + EPS)
    r = (sp - sn) / a.shape[1]
    return r.expand_as(a).contiguous()


def explain(net, x, init="gradcam", compare_k=3):
    """Forward + initial relevance + RSP backward. Returns (relevance [N,3,H,W], info)."""
    with torch.no_grad():
        a, saved = net.forward_features(x)
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = net.head(a)
    k = 1 if init == "gradcam" else compare_k
    classes = logits.detach().topk(k, dim=1).indices     # column 0 = target (top-1)
    grads = class_grads(logits, a, classes)
    a = a.detach()
    with torch.no_grad():
        r0 = init_gradcam(a, grads[0]) if init == "gradcam" else init_comparative(a, grads)
        rel = net.rsp(saved, r0)
    return rel, {"logits": logits.detach(), "classes": classes, "init": r0}


# ---------------------------------------------------------------------------------
# Models: torchvision by name (random weights) or from a torchvision-named state dict
# ---------------------------------------------------------------------------------

def load_state_dict(path):
    from safetensors.torch import load_file
    tensors = load_file(path)
    sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return (sd or tensors), tensors


def build_vgg(sd):
    conv_idx = sorted(int(k.split(".")[1]) for k, v in sd.items()
                      if k.startswith("features.") and k.endswith(".weight") and v.dim() == 4)
    bn = any(f"features.{i + 1}.running_mean" in sd for i in conv_idx)
    cfg, pos_ = [], 0
    for i in conv_idx:
        while pos_ < i:
            cfg.append("M")
            pos_ += 1
        cfg.append(sd[f"features.{i}.weight"].shape[0])
        pos_ += 3 if bn else 2
    cfg.append("M")                                     # torchvision VGGs end with a max pool
    lin_idx = sorted(int(k.split(".")[1]) for k in sd
                     if k.startswith("classifier.") and k.endswith(".weight"))
    if lin_idx != [0, 3, 6]:
        raise ValueError(f"expected classifier.0/3/6 Linear layers, found {lin_idx}")
    w0, w3, w6 = (sd[f"classifier.{i}.weight"] for i in lin_idx)
    side = math.isqrt(w0.shape[1] // cfg[-2])
    model = VGG(make_layers(cfg, batch_norm=bn), num_classes=w6.shape[0], init_weights=False)
    model.avgpool = nn.AdaptiveAvgPool2d((side, side))
    model.classifier = nn.Sequential(
        nn.Linear(w0.shape[1], w0.shape[0]), nn.ReLU(True), nn.Dropout(),
        nn.Linear(w3.shape[1], w3.shape[0]), nn.ReLU(True), nn.Dropout(),
        nn.Linear(w6.shape[1], w6.shape[0]))
    return model


def narrow_resnet(block, layers, stem, planes, num_classes):
    """A torchvision ResNet with any stem width and stage widths: `planes[i]` is the
    BasicBlock width or the Bottleneck's inner width (output = planes[i] * expansion).
    Built with torchvision's own block and stage constructors, so the module names and the
    wiring (v1.5: stride on the 3x3, downsample where the shape changes) are torchvision's.
    """
    model = ResNet(block, [1, 1, 1, 1], num_classes=num_classes)
    model.inplanes = stem
    model.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(stem)
    for i in range(4):
        stage = model._make_layer(block, planes[i], layers[i], stride=1 if i == 0 else 2)
        setattr(model, f"layer{i + 1}", stage)
    model.fc = nn.Linear(planes[3] * block.expansion, num_classes)
    return model


def build_resnet(sd):
    bottleneck = "layer1.0.conv3.weight" in sd
    layers = [1 + max(int(k.split(".")[1]) for k in sd if k.startswith(f"layer{i}."))
              for i in range(1, 5)]
    stem = sd["conv1.weight"].shape[0]
    planes = [sd[f"layer{i}.0.conv1.weight"].shape[0] for i in range(1, 5)]
    return narrow_resnet(Bottleneck if bottleneck else BasicBlock, layers, stem, planes,
                         sd["fc.weight"].shape[0])


def model_from_state_dict(sd):
    if any(k.startswith("features.") for k in sd):
        model = build_vgg(sd)
    elif any(k.startswith("layer1.") for k in sd):
        model = build_resnet(sd)
    else:
        raise ValueError("state dict is neither a torchvision VGG nor a ResNet")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.float().eval()


def model_by_name(name):
    if not re.fullmatch(r"vgg(11|13|16|19)(_bn)?|resnet(18|34|50|101|152)", name):
        raise SystemExit(f"error: unknown --model '{name}' (vgg11..19[_bn], resnet18..152)")
    return getattr(torchvision.models, name)(weights=None).eval()


# ---------------------------------------------------------------------------------
# Golden check and generator
# ---------------------------------------------------------------------------------

REL = "rsp.gradcam.rel."


def rel_err(impl, ref):
    return ((impl.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def sum_err(impl, ref):
    return ((impl.double().sum() - ref.double().sum()).abs() / ref.double().abs().sum()).item()


def reference_outputs(net, x, k=3):
    """Every tensor of a golden file except the weights and the input, for input x
    (batch 1): forward, head gradients of the top-k classes, both initialisations, both
    RSP maps and the relevance at the input of every module of the Grad-CAM run."""
    with torch.no_grad():
        a, saved = net.forward_features(x)
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = net.head(a)
    classes = logits.detach().topk(k, dim=1).indices     # column 0 = target (top-1)
    grads = class_grads(logits, a, classes)
    a = a.detach()
    out = {"logits": logits.detach(), "target": classes[:, 0].clone(),
           "comparative.classes": classes[0].clone(), "gradcam.act": a}
    for i, g in enumerate(grads):
        out[f"gradcam.grad.top{i}"] = g
    with torch.no_grad():
        record = {}
        out["init.gradcam"] = init_gradcam(a, grads[0])
        out["rsp.gradcam.out"] = net.rsp(saved, out["init.gradcam"], record)
        for name, r in record.items():
            out[REL + name] = r
        out["init.comparative"] = init_comparative(a, grads)
        out["rsp.comparative.out"] = net.rsp(saved, out["init.comparative"])
    return {name: t.detach().contiguous().clone() for name, t in out.items()}


def golden_cases(directory, names):
    if names:
        return names
    return sorted(f[:-len(".safetensors")] for f in os.listdir(directory)
                  if f.endswith(".safetensors"))


def check_golden(directory, names=None):
    torch.set_grad_enabled(True)
    ok = True
    for case in golden_cases(directory, names):
        path = os.path.join(directory, f"{case}.safetensors")
        sd, t = load_state_dict(path)
        net = wrap(model_from_state_dict(sd))
        x = t["input"].float()
        print(f"{case}: {type(net.model).__name__}, input {list(x.shape)}")
        for init in ("gradcam", "comparative"):
            rel, info = explain(net, x, init=init, compare_k=3)
            want = t["comparative.classes"].tolist() if init == "comparative" else t["target"].tolist()
            got = info["classes"][0].tolist()
            if got != want:
                print(f"  FAIL {init}: classes {got}, reference {want}")
                ok = False
            checks = [(f"init.{init}", info["init"]), (f"rsp.{init}.out", rel)]
            if init == "gradcam":
                checks.insert(0, ("logits", info["logits"]))
            for name, impl in checks:
                err, serr = rel_err(impl, t[name]), sum_err(impl, t[name])
                good = err <= TOLERANCE and serr <= TOLERANCE
                ok &= good
                sums = f"sum {impl.sum().item():+.6e} (ref {t[name].sum().item():+.6e})"
                print(f"  {'PASS' if good else 'FAIL'} {name:22s} max|impl-ref|/max|ref| = {err:.2e}  {sums}")
        # Every stored per-layer relevance of the Grad-CAM run, from the stored init.
        record = {}
        with torch.no_grad():
            _, saved = net.forward_features(x)
            net.rsp(saved, t["init.gradcam"], record)
        stored = [k for k in t if k.startswith(REL)]
        missing = [k for k in stored if k[len(REL):] not in record]
        extra = [n for n in record if REL + n not in t]
        errs = [(max(rel_err(record[k[len(REL):]], t[k]), sum_err(record[k[len(REL):]], t[k])), k)
                for k in stored if k[len(REL):] in record]
        bad = [(e, k) for e, k in errs if not e <= TOLERANCE]
        worst = max(errs) if errs else (float("nan"), "none")
        good = bool(stored) and not missing and not bad
        ok &= good
        print(f"  {'PASS' if good else 'FAIL'} per-layer relevance: {len(errs)}/{len(stored)} stored "
              f"tensors compared, worst {worst[0]:.2e} ({worst[1]})")
        for e, k in bad:
            print(f"    FAIL {k}: {e:.2e}")
        if missing:
            print(f"    FAIL not produced: {missing}")
        if extra:
            print(f"  info: produced but not stored: {extra}")
    print("golden check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


# The narrow ResNet cases of tests/golden: the published resnet_tiny's layout at 1/8 of
# its widths (stem 8 instead of 64, block outputs 32..256 instead of 256..2048), 64x64
# input. The Bottleneck case keeps 1000 classes (ImageNet class names resolve on it);
# the BasicBlock case is a ResNet18 at 1/8 width with 10 classes.
NARROW_CASES = {
    "resnet_bottleneck_narrow": dict(block="Bottleneck", layers=[1, 1, 1, 1], stem=8,
                                     planes=[8, 16, 32, 64], classes=1000, seed=4321),
    "resnet_basic_narrow": dict(block="BasicBlock", layers=[2, 2, 2, 2], stem=8,
                                planes=[8, 16, 32, 64], classes=10, seed=1818),
}
GOLDEN_IMAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "synth",
                            "ring_star.jpg")
# Recorded in every generated file (the same whatever DIR is, so regenerating elsewhere and
# comparing bytes works).
GOLDEN_COMMAND = "python3 benches/torch_rsp.py --make-golden tests/golden"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def init_narrow_weights(model, seed):
    """Conv weights kaiming-normal (fan_out, relu) from torch.manual_seed(seed), in module
    order; BN gamma U(0.5,1.5), beta U(-0.2,0.2), running_mean U(-0.2,0.2), running_var
    U(0.5,2.0), then fc weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's
    default Linear bounds), all from torch.Generator().manual_seed(seed + 1)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    gen = torch.Generator().manual_seed(seed + 1)

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(uniform(c, 0.5, 1.5))
                m.bias.copy_(uniform(c, -0.2, 0.2))
                m.running_mean.copy_(uniform(c, -0.2, 0.2))
                m.running_var.copy_(uniform(c, 0.5, 2.0))
        bound = 1 / math.sqrt(model.fc.in_features)
        model.fc.weight.copy_(uniform(model.fc.weight.shape, -bound, bound))
        model.fc.bias.copy_(uniform(model.fc.bias.shape, -bound, bound))


def golden_input(size):
    """docs/synth/ring_star.jpg as RGB, bilinear-resized to size x size if needed, x/255,
    then (x - mean) / std per channel with the ImageNet statistics -> [1, 3, size, size]."""
    import numpy as np
    from PIL import Image
    img = Image.open(GOLDEN_IMAGE).convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    return x.permute(2, 0, 1).unsqueeze(0).contiguous()


def make_golden(directory, names=None):
    import json
    import numpy as np
    import PIL
    import safetensors
    from safetensors.torch import save_file
    torch.set_grad_enabled(True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(directory, exist_ok=True)
    for case in names or list(NARROW_CASES):
        spec = NARROW_CASES[case]
        block = {"Bottleneck": Bottleneck, "BasicBlock": BasicBlock}[spec["block"]]
        model = narrow_resnet(block, spec["layers"], spec["stem"], spec["planes"], spec["classes"])
        init_narrow_weights(model, spec["seed"])
        model = model.float().eval()
        x = golden_input(64)
        out = reference_outputs(wrap(model), x)
        # The same computation in float64, for the sidecar's float32-vs-float64 columns.
        m64 = narrow_resnet(block, spec["layers"], spec["stem"], spec["planes"], spec["classes"])
        m64.load_state_dict(model.state_dict())
        out64 = reference_outputs(wrap(m64.double().eval()), x.double())
        if out["comparative.classes"].tolist() != out64["comparative.classes"].tolist():
            raise SystemExit(f"{case}: top-3 differ between float32 and float64; pick another seed")
        tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        tensors["input"] = x
        tensors.update(out)
        stats, worst = {}, (0.0, "")
        for name, t in out.items():
            if not t.is_floating_point():
                continue
            ref = out64[name]
            diff = (t.double() - ref).abs()
            e = rel_err(t, ref)
            worst = max(worst, (e, name))
            stats[name] = {
                "shape": list(t.shape), "max_abs": t.abs().max().item(), "sum": t.double().sum().item(),
                "rel_err_vs_f64": e,
                "rel_l2_err_vs_f64": (diff.norm() / ref.norm()).item(),
                "n_elems_err_gt_1e-4_maxabs": int((diff > 1e-4 * ref.abs().max()).sum()),
                "n_elems": t.numel(),
            }
        if worst[0] > TOLERANCE / 30:
            raise SystemExit(f"{case}: float32 vs float64 error {worst[0]:.2e} at {worst[1]} leaves "
                             f"less than 30x headroom under {TOLERANCE}; pick another seed")
        logits = out["logits"][0].double().sort(descending=True).values
        path = os.path.join(directory, f"{case}.safetensors")
        save_file(tensors, path, metadata={"generator": GOLDEN_COMMAND})
        sidecar = {
            "case": case,
            "generator": GOLDEN_COMMAND,
            "architecture": {
                "family": "resnet", "block": f"torchvision {spec['block']}", "layers": spec["layers"],
                "stem_width": spec["stem"], "planes": spec["planes"],
                "block_outputs": [p * block.expansion for p in spec["planes"]],
                "num_classes": spec["classes"],
                "conv1": "Conv2d(3, stem, 7, stride 2, padding 3, bias=False)",
                "avgpool": "AdaptiveAvgPool2d((1, 1))",
                "gradcam_layer": "layer4 output",
                "rsp_block_walk": "extension (not in the authors' code), the order of the authors' "
                                  f"{spec['block']}.RAP_relprop; see docs/method.md section 3",
            },
            "seed_weights": spec["seed"],
            "init": " ".join(init_narrow_weights.__doc__.split()),
            "input_image": "docs/synth/ring_star.jpg (64x64 JPEG) decoded by Pillow as RGB, x/255, "
                           f"then (x-mean)/std per channel, mean={IMAGENET_MEAN}, std={IMAGENET_STD}",
            "input_shape": list(x.shape),
            "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
            "numpy_version": np.__version__,
            "pillow_version": PIL.__version__, "safetensors_version": safetensors.__version__,
            "device": "cpu, torch.set_num_threads(1), deterministic algorithms; float32 (stored) "
                      "and float64 (comparison) runs",
            "target": out["target"].tolist()[0],
            "comparative_classes_top3": out["comparative.classes"].tolist(),
            "top4_logits": logits[:4].tolist(),
            "top4_gaps_over_max_abs_logit": ((logits[:3] - logits[1:4]) / logits.abs().max()).tolist(),
            "worst_rel_err_vs_f64": {"value": worst[0], "tensor": worst[1]},
            "not_stored": "lrp.* (the published cases' LRP outputs come from the authors' "
                          "relprop; no test reads them)",
            "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                        for k, v in tensors.items()},
            "output_stats": stats,
            "file_bytes": os.path.getsize(path),
        }
        with open(os.path.join(directory, f"{case}.json"), "w") as f:
            json.dump(sidecar, f, indent=1)
            f.write("\n")
        print(f"{case}: wrote {path} ({os.path.getsize(path)} bytes), target {sidecar['target']}, "
              f"top-3 {sidecar['comparative_classes_top3']}, worst float32 vs float64 "
              f"{worst[0]:.2e} ({worst[1]}), {sum(1 for k in out if k.startswith(REL))} per-layer tensors")
    return 0


# ---------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, device, warmup, runs):
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def report(label, times, batch, device):
    med = sorted(times)[len(times) // 2]          # same definition as `rsp bench`
    mem = ""
    if device.type == "cuda":
        mem = f"; torch.cuda.max_memory_allocated {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB"
    print(f"{label}: median {med:.2f} ms per batch, {med / batch:.2f} ms per image "
          f"(min {min(times):.2f}, max {max(times):.2f} ms, {len(times)} runs){mem}")
    return med


def time_lrp(model, x_host, device, args):
    """Zennit LRP with the engine's LRP baseline rules (docs/method.md section 6): alpha=1 beta=0
    (ZPlus) on conv/linear, z^B (ZBox, per-image bounds) on the first conv, proportional
    rule on average pools, started from logit * one_hot(top-1)."""
    try:
        from zennit.attribution import Gradient
        from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
        from zennit.rules import ZBox, ZPlus
        from zennit.torchvision import ResNetCanonizer, VGGCanonizer
        from zennit.types import Convolution, Linear
    except ImportError:
        print("lrp: zennit is not importable; skipping the LRP timing (pip install zennit)")
        return
    canonizers = [ResNetCanonizer()] if isinstance(model, ResNet) else [VGGCanonizer()]

    def logit_times_one_hot(out):
        return out * torch.zeros_like(out).scatter_(1, out.argmax(1, keepdim=True), 1.0)

    def lrp_once():
        x = x_host.to(device)
        composite = SpecialFirstLayerMapComposite(
            layer_map=layer_map_base() + [(Convolution, ZPlus()), (Linear, ZPlus())],
            first_map=[(Convolution, ZBox(per_image_min(x), per_image_max(x)))],
            canonizers=canonizers)
        with Gradient(model=model, composite=composite) as attributor:
            _, rel = attributor(x, logit_times_one_hot)
        return rel.cpu()

    times = time_fn(lrp_once, device, args.warmup, args.runs)
    report("zennit LRP z^B + alpha1beta0 (forward + backward)", times, args.batch, device)


def run_rsp_bin(args):
    cmd = [args.rsp_bin, "bench", "--model", args.model, "--size", str(args.size),
           "--batch", str(args.batch), "--runs", str(args.runs)]
    if args.fp16:
        cmd += ["--precision", "f16"]
    if args.weights:
        cmd += ["--weights", args.weights]
    print("running:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        print("  rsp>", line)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(f"error: {args.rsp_bin} exited with status {proc.returncode}")
    m = re.search(r"rsp \(forward \+ init \+ backward\): median ([0-9.]+) ms per batch, "
                  r"([0-9.]+) ms per image", proc.stdout)
    if not m:
        raise SystemExit("error: no 'rsp (forward + init + backward): median ...' line in its output")
    return float(m.group(1)), float(m.group(2))


def timing(args):
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    if args.weights:
        sd, _ = load_state_dict(args.weights)
        model = model_from_state_dict(sd)
    else:
        model = model_by_name(args.model)
    model = model.to(device).eval()
    net = wrap(model)
    gen = torch.Generator().manual_seed(12345)
    x_host = torch.rand(args.batch, 3, args.size, args.size, generator=gen) * 4 - 2
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, "
          f"{'float16 autocast' if args.fp16 else 'float32'}, "
          f"tf32 {'on' if args.tf32 and device.type == 'cuda' else 'off'}")

    def amp():
        # Mixed precision as PyTorch users run it: matrix products and convolutions in
        # float16 with float32 accumulation, the rest in float32.
        if args.fp16:
            return torch.autocast(device.type, dtype=torch.float16)
        return contextlib.nullcontext()
    print(f"model: {args.weights or args.model}, input {args.size}x{args.size}, batch {args.batch}, "
          f"init {args.init}" + (f" (K={args.compare_k})" if args.init == "comparative" else ""))

    def forward_once():
        with torch.no_grad(), amp():
            return model(x_host.to(device)).float().cpu()

    def rsp_once():
        with amp():
            rel, _ = explain(net, x_host.to(device), init=args.init, compare_k=args.compare_k)
        return rel.float().cpu()

    report("forward", time_fn(forward_once, device, args.warmup, args.runs), args.batch, device)
    med = report("rsp (forward + init + backward)",
                 time_fn(rsp_once, device, args.warmup, args.runs), args.batch, device)
    if args.lrp:
        time_lrp(model, x_host, device, args)
    if args.rsp_bin:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.init != "gradcam":
            print("note: `rsp bench` always times --init gradcam")
        _, rsp_img = run_rsp_bin(args)
        pt_img = med / args.batch
        label = os.path.basename(args.weights) if args.weights else args.model
        print(f"summary: model {label} size {args.size} batch {args.batch}: "
              f"pytorch {pt_img:.1f} ms/img, rsp {rsp_img:.1f} ms/img, "
              f"ratio pytorch/rsp {pt_img / rsp_img:.2f}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="vgg16", help="torchvision vgg11..19[_bn] or resnet18..152")
    p.add_argument("--weights", help="torchvision-named safetensors state dict (keys may start with 'model.')")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--init", choices=["gradcam", "comparative"], default="gradcam")
    p.add_argument("--compare-k", type=int, default=3)
    p.add_argument("--rsp-bin", help="also time `PATH bench ...` and print the ratio")
    p.add_argument("--lrp", action="store_true", help="also time Zennit LRP (if zennit is installed)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in cuDNN/cuBLAS (PyTorch's cuDNN default)")
    p.add_argument("--cpu", action="store_true", help="time on the CPU even if CUDA is available")
    p.add_argument("--fp16", action="store_true",
                   help="float16 autocast (and `rsp bench --precision f16` with --rsp-bin)")
    p.add_argument("--check-golden", metavar="DIR", help="check against the golden cases in DIR and exit")
    p.add_argument("--make-golden", metavar="DIR",
                   help="write the narrow ResNet golden cases (NARROW_CASES) to DIR and exit")
    p.add_argument("--cases", nargs="+", metavar="CASE",
                   help="with --check-golden / --make-golden: only these cases")
    args = p.parse_args()
    if args.check_golden:
        return check_golden(args.check_golden, args.cases)
    if args.make_golden:
        return make_golden(args.make_golden, args.cases)
    if args.batch < 1 or args.runs < 1 or args.compare_k < 2:
        raise SystemExit("error: --batch and --runs must be >= 1, --compare-k >= 2")
    return timing(args)


if __name__ == "__main__":
    sys.exit(main())
