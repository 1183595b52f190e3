#!/usr/bin/env python3
"""Agreement of the `rsp` baselines with the PyTorch peers users trust (Captum, Zennit).

Dev tool only: CI never runs it and the crate does not depend on it. It needs torch,
torchvision, captum, zennit, safetensors and numpy (install them in a virtual
environment outside the repository), and a built `rsp` binary.

What it does, per model (torchvision VGG11, VGG16-BN, ResNet18 with every compared
method at --size; VGG16 and ResNet50 with the gradient only, unless --all-methods, at
each of --large-sizes):

1. builds the torchvision architecture with seeded random weights (torchvision's own
   init after torch.manual_seed(--seed), then, from a seeded generator, biases
   0.1*N(0,1) and batch-norm gamma U(0.5,1.5), beta 0.1*N(0,1), running mean
   0.1*N(0,1), running var U(0.5,2), so biases and BN are not the trivial init) and
   hands it to rsp the way a user would:
   `safetensors.torch.save_file(model.state_dict(), path)`, then `rsp --weights path`;
2. makes one input image, U(0,1) pixels normalised with the ImageNet mean/std, shape
   [1,3,S,S], saved as the tensor `input` of a .safetensors file (rsp reads such an
   INPUT as already normalised, no resizing) and fed unchanged to PyTorch;
3. takes PyTorch's top-1 class t, runs `rsp --method M --target t --save-relevance`
   and compares the saved `relevance` ([N,3,H,W]; [N,1,H,W] for gradcam) with the
   peer's map for the same class, as relative L2 ||rsp - peer|| / ||peer||. The peers
   run in float32 on the CPU; every peer is also run in float64, and the note column
   gives rsp's distance to that and the peer's own float32-vs-float64 distance (how
   well conditioned the map is), plus for LRP the map sums and the target logit.

Which definition each comparison follows (docs/baselines.md, docs/method.md sections
2 and 6):

- gradient: d y_t / d x, signed, [N,3,H,W] (Simonyan et al.); peer Captum
  Saliency(model).attribute(x, target=t, abs=False).
- gradxinput: x * d y_t / d x (Shrikumar et al.); peer Captum InputXGradient.
- gradcam: ReLU(sum_c mean_hw(d y_t / d A_c) * A_c) at rsp's explanation layer A (VGG:
  the output of the last ReLU before the last max pool, e.g. features.29 of VGG16;
  ResNet: the output of layer4), then bilinear resize to HxW with torch's
  align_corners=False; peer Captum LayerGradCam(model, A).attribute(x, t,
  relu_attributions=True) (Captum's default is relu_attributions=False) +
  LayerAttribution.interpolate(..., interpolate_mode='bilinear') (F.interpolate,
  align_corners=False).
- lrp-eps: seed one-hot * logit; epsilon rule, eps = 0.25, z stabilised as
  z + eps*sign(z), bias included, in every conv, linear and average pool; z^B on the
  first conv with the image's own scalar bounds L = min(x), H = max(x) (no bias;
  bounds as constant images, zero padding); ReLU passes relevance; max pools route it
  to the window winner; batch norm is its own one-input affine layer (eps rule, no
  merging into the conv); a residual add out = a + b splits in proportion to a and b
  (eps rule). Peer "Zennit Epsilon(0.25) (matched)": SpecialFirstLayerMapComposite
  with Epsilon(0.25) on Convolution, Linear, AvgPool, BatchNorm and the ResNet block
  Sum, Pass on activations, ZBox(per-image min, max) on the first conv (Zennit keeps
  the bias in all three ZBox terms, where it cancels), max pools without a rule (so
  plain gradient: the winner takes it), no BN merging (ResNet: only the block
  canonizers, which add the Sum module). Peer "Zennit built-in map + canonizer": what
  a Zennit user gets from layer_map_base() + Epsilon(0.25) on conv/linear + the same
  ZBox + VGGCanonizer / ResNetCanonizer: BN merged into the conv, average pools and
  sums with Norm (proportional, stabiliser 1e-6, i.e. no 0.25 there).
- lrp-ab: seed one-hot * logit; z+ rule (alpha=1, beta=0) = pos(W), NO bias, in every
  conv and linear layer, proportional rule on average pools, z^B first conv, BN rule
  R_in = R * [x * gamma/sqrt(var+eps) > 0] (BN as a one-input layer, shift left out),
  residual add split in proportion to pos(a), pos(b). Peers: Zennit ZPlus() (its
  default keeps positive biases in z), ZPlus(zero_params=['bias']) (rsp's z+), each
  with ZBox first, Norm on average pools and, to match rsp's BN and residual rules,
  two small rules written here on Zennit's Hook API (BN positive part, positive-part
  Sum); the bias-free one again with the first-layer bounds Zennit's docs use (the
  normalised pixel range [0, 1], per channel) instead of rsp's image min/max; and, for
  BN models, the built-in map + canonizer (BN merged; ZPlus with zero bias on the
  merged conv, Norm on the Sum).
- logits: rel max error max|y_rsp - y_torch| / max|y_torch| (a sanity line).
- flip-conditioning bound (with every gradient row): how far PyTorch's OWN float32
  gradient moves (rel L2; median over --flip-draws draws) when the input moves by
  1e-6 * N(0,1), with the number of ReLU units whose on/off state flips. The gradient
  of a ReLU/max-pool network is piecewise constant in x, so it moves only where a unit
  near zero flips; a rsp-vs-Captum difference of that size is float32 rounding
  deciding such units, not a different definition. At 64 px nothing flips; at 224 px
  VGG16 and ResNet50 have a few such units (hence --large-sizes 64 224).

ONNX mode (--onnx): rsp explaining ONNX graphs, `rsp --weights model.onnx`, on
torchvision architectures rsp only imports from ONNX (--onnx-models: DenseNet-121,
GoogLeNet, SqueezeNet 1.1, AlexNet) at --onnx-size (224). Needs onnx, onnxruntime and
onnxscript besides torch, torchvision, captum, safetensors and numpy (not zennit). Per model:

1. the same seeded weights as above (make_model; GoogLeNet built with aux_logits=False,
   init_weights=True) and one input from make_input, for PyTorch's top-1 class t;
2. both torch.onnx exporters, as tools/export_onnx.py uses them: "legacy"
   (dynamo=False, do_constant_folding=False, opset 17; batch norm kept as
   BatchNormalization nodes) and "dynamo" (dynamo=True, external_data=True; it folds
   batch norm into the preceding convolution where there is one);
3. per exporter: logits (rsp's saved logits vs PyTorch f64, rel max error; the note
   adds PyTorch f32 and onnxruntime on the same file), gradient vs Captum
   Saliency(abs=False), gradxinput vs Captum InputXGradient, and gradcam vs Captum
   LayerGradCam(relu_attributions=True) + bilinear interpolate at the layer rsp uses by
   default: the line `rsp inspect model.onnx` marks "explanation layer (default)",
   mapped to the torchvision module whose output it is (a module path as is;
   `<path>.concat` the module at <path>: GoogLeNet's Inception and SqueezeNet's Fire
   return their concatenation; DenseNet's `relu`, the functional F.relu after
   `features`, is made a module of a wrapper with the same forward, DenseNetSplit). The
   note checks the mapped layer's shape against rsp's and Captum against Grad-CAM
   written out with hooks, as above. rel L2 and the f32/f64 notes as above;
4. the flip-conditioning bound once per model (PyTorch's own gradient), here also
   counting max-pool windows whose winner changes, and the windows whose two largest
   inputs differ by no more than 1e-6 of the maximum (exact ties left out: mostly one
   input seen twice), where float32 rounding alone can route the gradient to the other
   input; the dynamo rows add rsp's distance to its own map on the legacy export;
5. rsp and lrp-eps have no peer in this mode: one row each gives rsp's map on the
   dynamo export against rsp's map on the legacy export (rel L2), the map sums and the
   number of BatchNormalization nodes each graph kept (lrp-eps treats batch norm as
   its own eps layer, so folding it into the conv changes that map by definition).

An export or rsp run that fails becomes a "failed" row (its error's first line) and,
below the table, the command and its whole output; the run goes on.

Usage (the full table: 6-8 minutes on a 2-core CPU with lavapipe, rsp's Vulkan CPU device):

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch torchvision captum zennit safetensors numpy
    /tmp/peers-venv/bin/python benches/peers.py --rsp-bin target/release/rsp \\
        --size 64 --large-sizes 64 224 --out-md /tmp/peers_results.md

ONNX mode (about 10 minutes on the same machine):

    /tmp/peers-venv/bin/pip install torch torchvision captum onnx onnxruntime onnxscript \\
        safetensors numpy
    /tmp/peers-venv/bin/python benches/peers.py --rsp-bin target/release/rsp --onnx \\
        --out-md /tmp/peers_onnx.md

rsp runs with --autotune off (its fixed kernel heuristics; nothing timed or cached)
unless --rsp-arg is given, e.g. --rsp-arg=--exact-kernels.

Prints a Markdown table (model | method | peer | rel L2 | note; --onnx: model |
exporter | method | peer | rel L2 (logits: rel max) | note) and, with --out-md,
writes it (plus the command and versions) to that file. All temporary files (weights,
inputs, rsp outputs) live in a tempfile.TemporaryDirectory.
"""

import argparse
import copy
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file

SMALL = ["vgg11", "vgg16_bn", "resnet18"]
LARGE = ["vgg16", "resnet50"]
ALL_METHODS = ["gradient", "gradxinput", "gradcam", "lrp-eps", "lrp-ab"]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EPS_RSP = 0.25  # docs/baselines.md: lrp-eps uses eps = 0.25
FLIP_DELTA = 1e-6


# ----------------------------------------------------------------------------- models


def make_model(name, seed, **builder_kwargs):
    """torchvision `name` with seeded random weights, non-trivial biases and BN, eval mode
    (`builder_kwargs` go to the torchvision builder, e.g. GoogLeNet's aux_logits)."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, **builder_kwargs)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and mod.bias is not None:
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            elif isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(0.5 + torch.rand(c, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(c, generator=gen))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                mod.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
    return model.eval()


def make_input(size, seed):
    gen = torch.Generator().manual_seed(seed + 2)
    img = torch.rand(1, 3, size, size, generator=gen)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((img - mean) / std).contiguous()


def explanation_layer(model):
    """rsp's layer A (docs/method.md section 2): VGG: last ReLU before the last max pool;
    ResNet: layer4."""
    if hasattr(model, "layer4"):
        return model.layer4, "layer4"
    feats = list(model.features)
    last_pool = max(i for i, m in enumerate(feats) if isinstance(m, torch.nn.MaxPool2d))
    relu = max(i for i, m in enumerate(feats[:last_pool]) if isinstance(m, torch.nn.ReLU))
    return model.features[relu], f"features.{relu}"


def is_resnet(model):
    return hasattr(model, "layer4")


# ------------------------------------------------------------------------------ peers


def captum_gradient(model, x, t):
    from captum.attr import Saliency

    return Saliency(model).attribute(x.clone().requires_grad_(), target=t, abs=False).detach()


def captum_gradxinput(model, x, t):
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(x.clone().requires_grad_(), target=t).detach()


def captum_gradcam(model, x, t, layer=None):
    """Captum's Grad-CAM at `layer` (default: rsp's layer A of a VGG/ResNet)."""
    from captum.attr import LayerAttribution, LayerGradCam

    if layer is None:
        layer, _ = explanation_layer(model)
    cam = LayerGradCam(model, layer).attribute(
        x.clone().requires_grad_(), target=t, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]),
                                        interpolate_mode="bilinear").detach()


def hand_gradcam(model, x, t, layer=None):
    """Grad-CAM written out (a check on the Captum call, not a peer)."""
    if layer is None:
        layer, _ = explanation_layer(model)
    store = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    h = layer.register_forward_hook(hook)
    try:
        y = model(x.clone().requires_grad_())
        y[0, t].backward()
    finally:
        h.remove()
    a = store["a"]
    w = a.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((w * a).sum(1, keepdim=True))
    return F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear",
                         align_corners=False).detach()


def zennit_rules():
    """The two rules Zennit has no built-in for, written on Zennit's Hook API."""
    from zennit.core import BasicHook, Hook, stabilize
    from zennit.rules import NoMod

    class BNPositivePart(Hook):
        """rsp's lrp-ab batch-norm rule: R_in = R * [x * gamma/sqrt(var + eps) > 0]."""

        def forward(self, module, input, output):
            self.stored_tensors["input"] = input

        def backward(self, module, grad_input, grad_output):
            x = self.stored_tensors["input"][0]
            scale = (module.weight / torch.sqrt(module.running_var + module.eps)).view(1, -1, 1, 1)
            rel = grad_output[0] * ((x * scale) > 0).to(grad_output[0].dtype)
            return tuple(rel if g is not None and g.shape == rel.shape else None
                         for g in grad_input)

        def copy(self):
            return BNPositivePart()

    class PositiveSum(BasicHook):
        """rsp's lrp-ab residual rule on Zennit's stacked Sum: shares pos(a) : pos(b)."""

        def __init__(self):
            super().__init__(
                input_modifiers=[lambda inp: inp.clamp(min=0)],
                param_modifiers=[NoMod(param_keys=[])],
                output_modifiers=[lambda out: out],
                gradient_mapper=lambda g, outs: g / stabilize(outs[0]),
                reducer=lambda ins, grads: ins[0] * grads[0],
            )

    return BNPositivePart, PositiveSum


def zennit_lrp(model, x, t, variant):
    """Zennit LRP for the target t, seeded with one-hot * logit. `variant`:
    eps-matched, eps-builtin, ab-bias, ab-nobias, ab-pixelbox, ab-builtin (see the module
    docstring)."""
    from zennit.attribution import Gradient
    from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
    from zennit.layer import Sum
    from zennit.rules import Epsilon, Norm, Pass, ZBox, ZPlus
    from zennit.torchvision import (ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer,
                                    ResNetCanonizer, VGGCanonizer)
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

    BNPositivePart, PositiveSum = zennit_rules()
    model = copy.deepcopy(model)
    n = x.shape[0]
    if variant == "ab-pixelbox":
        # the bounds Zennit's docs use: the normalised pixel range [0, 1], per channel
        mean = torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
        low, high = (0 - mean) / std, (1 - mean) / std
    else:  # rsp's: the image's own min and max, one pair of scalars per image
        low = x.reshape(n, -1).min(1).values.view(n, 1, 1, 1)
        high = x.reshape(n, -1).max(1).values.view(n, 1, 1, 1)
    first = [(Convolution, ZBox(low, high))]
    resnet = is_resnet(model)
    builtin = variant.endswith("builtin")
    if builtin:
        canonizers = [ResNetCanonizer()] if resnet else [VGGCanonizer()]
    else:
        canonizers = ([ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]
                      if resnet else [])
    if variant == "eps-matched":
        layer_map = [(Activation, Pass()), (Sum, Epsilon(EPS_RSP)), (AvgPool, Epsilon(EPS_RSP)),
                     (BatchNorm, Epsilon(EPS_RSP)), (Convolution, Epsilon(EPS_RSP)),
                     (Linear, Epsilon(EPS_RSP))]
    elif variant == "eps-builtin":
        layer_map = layer_map_base() + [(Convolution, Epsilon(EPS_RSP)),
                                        (Linear, Epsilon(EPS_RSP))]
    elif variant in ("ab-bias", "ab-nobias", "ab-pixelbox"):
        zp = ZPlus() if variant == "ab-bias" else ZPlus(zero_params=["bias"])
        layer_map = [(Activation, Pass()), (Sum, PositiveSum()), (AvgPool, Norm()),
                     (BatchNorm, BNPositivePart()), (Convolution, zp), (Linear, zp)]
    elif variant == "ab-builtin":
        zp = ZPlus(zero_params=["bias"])
        layer_map = layer_map_base() + [(Convolution, zp), (Linear, zp)]
    else:
        raise ValueError(variant)
    composite = SpecialFirstLayerMapComposite(layer_map=layer_map, first_map=first,
                                              canonizers=canonizers)

    def seed(out):
        return out * F.one_hot(torch.full((out.shape[0],), t), out.shape[1]).to(out.dtype)

    with Gradient(model=model, composite=composite) as attributor:
        _, rel = attributor(x.clone().requires_grad_(), seed)
    return rel.detach()


ZENNIT_VARIANTS = {
    "lrp-eps": [("eps-matched", "Zennit Epsilon(0.25) (matched)"),
                ("eps-builtin", "Zennit built-in map + canonizer")],
    "lrp-ab": [("ab-bias", "Zennit ZPlus() default (+bias)"),
               ("ab-nobias", "Zennit ZPlus(zero_params=['bias'])"),
               ("ab-pixelbox", "same, ZBox per-channel pixel-range bounds"),
               ("ab-builtin", "Zennit built-in map + canonizer")],
}


def has_bn(model):
    return any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def variant_differs(method, variant, model):
    """How a Zennit variant departs from rsp's definition (None: it matches)."""
    if variant == "ab-bias":
        return "positive biases kept in z"
    if variant == "ab-pixelbox":
        return "first-layer bounds only"
    if variant.endswith("builtin"):
        parts = ["Norm (no eps) on avg pools"] if method == "lrp-eps" else []
        if is_resnet(model):
            parts.append("Norm on the residual Sum"
                         + (" (signed a, b)" if method == "lrp-ab" else " (no eps)"))
        if has_bn(model):
            parts.append("BN merged into the conv"
                         + (" (rsp: BN its own layer, drops R where x*scale <= 0)"
                            if method == "lrp-ab" else " (rsp: BN its own eps layer)"))
        return ", ".join(parts)
    return None


def peers_for(method, model):
    """[(peer label, fn(model, x, t) -> map, how it departs from rsp or None)]."""
    if method == "gradient":
        return [("Captum Saliency(abs=False)", captum_gradient, None)]
    if method == "gradxinput":
        return [("Captum InputXGradient", captum_gradxinput, None)]
    if method == "gradcam":
        _, name = explanation_layer(model)
        return [(f"Captum LayerGradCam({name}, relu) + bilinear", captum_gradcam, None)]
    out = []
    for variant, label in ZENNIT_VARIANTS[method]:
        if variant == "ab-builtin" and not has_bn(model):
            continue  # a VGG without BN: the built-in lrp-ab map is the ab-nobias one
        out.append((label, lambda m, x, t, v=variant: zennit_lrp(m, x, t, v),
                    variant_differs(method, variant, model)))
    return out


# -------------------------------------------------------------------------- metrics


def rel_l2(a, b):
    a = a.double().flatten()
    b = b.double().flatten()
    nb = b.norm().item()
    return (a - b).norm().item() / nb if nb > 0 else float("inf")


def relu_sites(model):
    """Modules whose output > 0 is the on/off state of a ReLU: every nn.ReLU, plus the
    functional ReLUs of the ONNX mode's models (GoogLeNet's BasicConv2d ends in F.relu;
    DenseNet applies F.relu to the output of `features`)."""
    from torchvision.models.googlenet import BasicConv2d

    sites = [m for m in model.modules() if isinstance(m, (torch.nn.ReLU, BasicConv2d))]
    if isinstance(model, torchvision.models.DenseNet):
        sites.append(model.features)
    return sites


def relu_masks(model, x):
    masks = []

    def hook(_m, _i, out):
        masks.append((out > 0).flatten().clone())

    forward_with_hooks(model, x, relu_sites(model), hook)
    return torch.cat(masks)


def forward_with_hooks(model, x, modules, hook):
    """One forward pass of `x` without gradients, with `hook` on each of `modules`."""
    hs = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()


def pool_winners(model, x, near=None):
    """The argmax of every nn.MaxPool2d window (which input the gradient is routed to);
    with a list `near`, also appends per pool the number of windows whose two largest
    inputs differ, but by at most 1e-6 of the maximum (max > 0, dilation 1): where float32
    rounding can pick the other winner. Exact ties are left out: they are mostly one
    input seen twice (a stride-1 pool after an overlapping pool), harmless."""
    import math

    wins = []

    def hook(mod, inp, out):
        _, idx = F.max_pool2d(inp[0], mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                              ceil_mode=mod.ceil_mode, return_indices=True)
        wins.append(idx.flatten().clone())
        if near is not None:
            k, st, pad = (torch.nn.modules.utils._pair(v)
                          for v in (mod.kernel_size, mod.stride, mod.padding))
            (h, w), (oh, ow) = inp[0].shape[2:], out.shape[2:]
            extra = [max(0, (o - 1) * s + kk - n - p) for o, s, kk, n, p in
                     ((ow, st[1], k[1], w, pad[1]), (oh, st[0], k[0], h, pad[0]))]
            a = F.pad(inp[0], (pad[1], extra[0], pad[0], extra[1]), value=-math.inf)
            u = a.unfold(2, k[0], st[0]).unfold(3, k[1], st[1])[:, :, :oh, :ow]
            top = u.reshape(*out.shape, -1).topk(2, dim=-1).values
            gap = top[..., 0] - top[..., 1]
            near.append(int(((gap <= 1e-6 * top[..., 0]) & (gap > 0) & (top[..., 0] > 0)).sum()))

    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    forward_with_hooks(model, x, pools, hook)
    return torch.cat(wins) if wins else torch.zeros(0, dtype=torch.int64)


def flip_bound(model, x, t, seed, draws, pools=False):
    """PyTorch's own float32 gradient under `draws` input perturbations x + 1e-6 * N(0,1):
    ([rel L2 per draw], [ReLU units whose state flips, per draw], ReLU units in all), and
    with `pools` also ([max-pool windows whose winner changes, per draw], windows in all)."""
    gen = torch.Generator().manual_seed(seed + 3)
    g0 = captum_gradient(model, x, t)
    m0 = relu_masks(model, x)
    w0 = pool_winners(model, x) if pools else None
    dists, flips, moved = [], [], []
    for _ in range(draws):
        xp = x + FLIP_DELTA * torch.randn(x.shape, generator=gen)
        dists.append(rel_l2(captum_gradient(model, xp, t), g0))
        flips.append(int((relu_masks(model, xp) != m0).sum()))
        if pools:
            moved.append(int((pool_winners(model, xp) != w0).sum()))
    if pools:
        return dists, flips, m0.numel(), moved, w0.numel()
    return dists, flips, m0.numel()


# ------------------------------------------------------------------------------- rsp


class RspFailed(Exception):
    """An rsp run that exited non-zero: .cmd (the command line), .text (its output)."""

    def __init__(self, cmd, code, text):
        super().__init__(f"rsp failed ({code}): {cmd}\n{text}")
        self.cmd, self.code, self.text = cmd, code, text


def run_rsp(args, weights, inp, method, target, out, size, exit_on_error=True):
    cmd = [args.rsp_bin, "--weights", weights, "--method", method, "--target", str(target),
           "--size", str(size), "--save-relevance", out,
           "--out", os.path.join(os.path.dirname(out), "png"), *args.rsp_arg, inp]
    env = dict(os.environ, RSP_CACHE_DIR=os.path.join(os.path.dirname(out), "cache"))
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        err = RspFailed(" ".join(cmd), res.returncode, f"{res.stdout}\n{res.stderr}".strip())
        if exit_on_error:
            sys.exit(str(err))
        raise err
    return load_file(out), time.time() - t0


# ------------------------------------------------------------------------------ onnx

ONNX_MODELS = ["densenet121", "googlenet", "squeezenet1_1", "alexnet"]
ONNX_METHODS = ["gradient", "gradxinput", "gradcam", "rsp", "lrp-eps"]
ONNX_PEERS = {"gradient": "Captum Saliency(abs=False)", "gradxinput": "Captum InputXGradient"}
EXPORTERS = ["legacy", "dynamo"]


def make_onnx_model(name, seed):
    """make_model's seeded random weights, biases and BN for the ONNX mode's models."""
    if name == "googlenet":
        return make_model(name, seed, aux_logits=False, init_weights=True)
    return make_model(name, seed)


def export_onnx(model, x, exporter, path):
    """torch.onnx.export as tools/export_onnx.py does it; the exporters' chatter (some of
    it printed by C++) goes to stderr, so stdout keeps only the table."""
    import contextlib

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            if exporter == "legacy":
                torch.onnx.export(model, (x,), path, dynamo=False, do_constant_folding=False,
                                  input_names=["input"], output_names=["logits"],
                                  opset_version=17)
            else:
                torch.onnx.export(model, (x,), path, dynamo=True, external_data=True)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def bn_nodes(path):
    """How many BatchNormalization nodes the exported graph kept (dynamo folds some)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return sum(node.op_type == "BatchNormalization" for node in graph.node)


def onnxruntime_logits(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def rsp_default_layer(args, path):
    """(name, [C, H, W]) of the line `rsp inspect` marks "explanation layer (default)"."""
    cmd = [args.rsp_bin, "inspect", path]
    res = subprocess.run(cmd, capture_output=True, text=True)
    for line in res.stdout.splitlines():
        if "explanation layer (default)" in line:
            shape = next(w for w in line.split() if "×" in w)
            return line.split()[1], [int(v) for v in shape.split("×")]
    raise RspFailed(" ".join(cmd), res.returncode, f"{res.stdout}\n{res.stderr}".strip())


class DenseNetSplit(torch.nn.Module):
    """torchvision DenseNet's forward written out with its functional final ReLU (ONNX
    node `relu`) as a module, so that Captum's LayerGradCam can take that ReLU's output."""

    def __init__(self, net):
        super().__init__()
        self.features, self.relu, self.classifier = net.features, torch.nn.ReLU(), net.classifier

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(out, 1))


def onnx_cam_layer(model, name):
    """(model, module, how) with `module`'s output = rsp's explanation layer `name`: a
    module path as is; `<path>.concat` the module at <path> (GoogLeNet's Inception,
    SqueezeNet's Fire and DenseNet's dense block return their concatenation); DenseNet's
    `relu` the ReLU module of DenseNetSplit(model) (the same forward)."""
    if isinstance(model, torchvision.models.DenseNet) and name == "relu":
        split = DenseNetSplit(model)
        return split, split.relu, "F.relu after features, as a module of the same forward"
    path = name[:-len(".concat")] if name.endswith(".concat") else name
    module = model.get_submodule(path)
    return model, module, f"output of {path} ({type(module).__name__})"


def layer_output_shape(model, layer, x):
    store = {}

    def hook(_m, _i, out):
        store["s"] = list(out.shape[1:])

    h = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return store["s"]


def onnx_peer(method, model, x, t, cam):
    if method == "gradient":
        return captum_gradient(model, x, t)
    if method == "gradxinput":
        return captum_gradxinput(model, x, t)
    cam_model, layer = cam
    return captum_gradcam(cam_model, x, t, layer)


def short(text, n=160):
    """An error text's first line that says "error" (else its last line), cut to n
    characters, for a table cell."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "?")
    return (line[:n] + "..." if len(line) > n else line).replace("|", "/")


def pytorch_logits(name, model, model64, x, x64):
    """PyTorch's float32 and float64 logits and its float32 top-1 class (warning when
    float64 disagrees on the class)."""
    with torch.no_grad():
        logits = model(x)
        logits64 = model64(x64)
    t = int(logits.argmax(1)[0])
    if int(logits64.argmax(1)[0]) != t:
        print(f"warning: {name}: float64 top-1 differs from float32 top-1", file=sys.stderr)
    return logits, logits64, t


def run_onnx_model(args, name, tmp, rows, failures):
    """One torchvision model through both exporters (see the module docstring)."""
    size = args.onnx_size
    model = make_onnx_model(name, args.seed)
    model64 = copy.deepcopy(model).double()
    x = make_input(size, args.seed)
    x64 = x.double()
    label = f"{name} ({size} px)"
    ipath = os.path.join(tmp, "input.safetensors")
    save_file({"input": x}, ipath)
    logits, logits64, t = pytorch_logits(name, model, model64, x, x64)
    scale = logits64.abs().max().item()
    peers = {}  # (method, rsp layer name) -> (ref f32, ref f64, note)
    maps = {}  # (method, exporter) -> (rsp map, seconds)
    flip_done = False
    bn_kept = {}  # exporter -> BatchNormalization nodes in its graph

    def fail(exporter, method, what, err):
        failures.append((label, exporter, method, err))
        rows.append((label, exporter, method, "-", "failed", f"{what}: {short(err.text)}"))
        print(f"  {label} {exporter} {method}: FAILED\n{err}", file=sys.stderr)

    for exporter in EXPORTERS:
        mdir = os.path.join(tmp, exporter)
        os.makedirs(mdir, exist_ok=True)
        path = os.path.join(mdir, f"{name}.onnx")
        t0 = time.time()
        try:
            export_onnx(copy.deepcopy(model), x, exporter, path)
        except Exception as e:  # noqa: BLE001 - reported in the table
            err = RspFailed(f"torch.onnx.export(dynamo={exporter == 'dynamo'})", -1,
                            f"{type(e).__name__}: {e}")
            fail(exporter, "export", "torch.onnx.export", err)
            continue
        print(f"  {label} {exporter}: exported in {time.time() - t0:.0f} s", file=sys.stderr)
        bn_kept[exporter] = bn_nodes(path)
        try:
            ort_err = ((onnxruntime_logits(path, x).double() - logits64).abs().max().item()
                       / scale)
            ort_note = f"onnxruntime f32 vs f64 {fmt(ort_err)}"
        except Exception as e:  # noqa: BLE001 - only a note
            ort_note = f"onnxruntime failed: {short(str(e))}"
        try:
            layer_name, layer_shape = rsp_default_layer(args, path)
        except RspFailed as err:
            layer_name, layer_shape = None, None
            fail(exporter, "inspect", "rsp inspect", err)
        logits_done = False
        for method in args.onnx_methods:
            if method == "gradcam" and layer_name is None:
                continue
            out = os.path.join(mdir, f"{name}.{method}.safetensors")
            try:
                saved, secs = run_rsp(args, path, ipath, method, t, out, size,
                                      exit_on_error=False)
            except RspFailed as err:
                fail(exporter, method, "rsp", err)
                continue
            print(f"  {label} {exporter} {method}: rsp {secs:.1f} s", file=sys.stderr)
            rel = saved["relevance"]
            maps[(method, exporter)] = (rel, secs)
            explained = int(saved["target"].flatten()[0])
            if not logits_done:
                d_rsp = (saved["logits"].double() - logits64).abs().max().item() / scale
                d_f32 = (logits.double() - logits64).abs().max().item() / scale
                rows.append((label, exporter, "logits", "PyTorch forward (f64)", fmt(d_rsp),
                             f"rel max error; top-1 class {t}; logit {logits[0, t].item():.4g}; "
                             f"PyTorch f32 vs f64 {fmt(d_f32)}; {ort_note}"))
                logits_done = True
            if explained != t:
                rows.append((label, exporter, method, "-", "failed",
                             f"rsp explained class {explained}, not {t}"))
                continue
            if method not in ("gradient", "gradxinput", "gradcam"):
                continue  # no peer in this venv: compared across the exporters below
            key = (method, layer_name if method == "gradcam" else None)
            if key not in peers:
                note = ""
                cam = cam64 = None
                if method == "gradcam":
                    cam_model, layer, how = onnx_cam_layer(model, layer_name)
                    cam64_model, layer64, _ = onnx_cam_layer(model64, layer_name)
                    cam, cam64 = (cam_model, layer), (cam64_model, layer64)
                    with torch.no_grad():
                        same = torch.equal(cam_model(x), logits)
                    got = layer_output_shape(cam_model, layer, x)
                    note = (f"; rsp's default layer {layer_name} {layer_shape} = {how} {got}"
                            + ("" if same else "; WARNING: that model's logits differ")
                            + ("" if got == layer_shape else "; WARNING: shapes differ"))
                ref = onnx_peer(method, model, x, t, cam)
                ref64 = onnx_peer(method, model64, x64, t, cam64)
                note = f"peer f32 vs f64 {fmt(rel_l2(ref, ref64))}" + note
                if method == "gradcam":
                    hand = hand_gradcam(cam64[0], x64, t, cam64[1])
                    note += ("; Captum f64 vs Grad-CAM written out in f64 "
                             f"{fmt(rel_l2(ref64, hand))}")
                peers[key] = (ref, ref64, note)
            ref, ref64, note = peers[key]
            if tuple(ref.shape) != tuple(rel.shape):
                rows.append((label, exporter, method, ONNX_PEERS.get(method, "Captum"), "failed",
                             f"shapes differ, rsp {tuple(rel.shape)} peer {tuple(ref.shape)}"))
                continue
            peer = ONNX_PEERS.get(method, f"Captum LayerGradCam({layer_name}, relu) + bilinear")
            if exporter != EXPORTERS[0] and (method, EXPORTERS[0]) in maps:
                note = (f"rsp vs rsp on the {EXPORTERS[0]} export "
                        f"{fmt(rel_l2(rel, maps[(method, EXPORTERS[0])][0]))}; {note}")
            rows.append((label, exporter, method, peer, fmt(rel_l2(rel, ref)),
                         f"vs peer f64 {fmt(rel_l2(rel, ref64))}; {note}"))
            print(f"  {label} {exporter} {method} vs {peer}: {rows[-1][4]}", file=sys.stderr)
            if method == "gradient" and args.flip_draws > 0 and not flip_done:
                dists, flips, total, moved, windows = flip_bound(
                    model, x, t, args.seed, args.flip_draws, pools=True)
                near = []
                pool_winners(model, x, near)
                rows.append((label, "-", "gradient",
                             f"PyTorch f32 itself at x + {FLIP_DELTA:g}*N(0,1)",
                             fmt(float(np.median(dists))),
                             f"flip-conditioning bound: median of {len(dists)} draws (max "
                             f"{fmt(max(dists))}); ReLU units changing state per draw "
                             f"{min(flips)}-{max(flips)} of {total}; max-pool windows "
                             f"changing winner per draw {min(moved)}-{max(moved)} of {windows}, "
                             f"near-tied (top two 0 < gap <= 1e-6 rel) {sum(near)}"))
                flip_done = True
    for method in args.onnx_methods:
        if method in ("gradient", "gradxinput", "gradcam"):
            continue
        if (method, "legacy") not in maps or (method, "dynamo") not in maps:
            continue
        (a, sa), (b, sb) = maps[(method, "dynamo")], maps[(method, "legacy")]
        finite = bool(torch.isfinite(a).all() and torch.isfinite(b).all())
        rows.append((label, "dynamo vs legacy", method, "rsp on the legacy export",
                     fmt(rel_l2(a, b)),
                     f"no peer here; map sums legacy {b.sum().item():.4g}, dynamo "
                     f"{a.sum().item():.4g} (logit {logits[0, t].item():.4g}); "
                     f"{'all finite' if finite else 'NOT FINITE'}; BatchNormalization nodes "
                     f"legacy {bn_kept['legacy']}, dynamo {bn_kept['dynamo']}; "
                     f"rsp {sb:.0f} s / {sa:.0f} s"))


# ------------------------------------------------------------------------------ main


def fmt(v):
    return f"{v:.2e}"


def run_model(args, name, size, methods, tmp, rows):
    model = make_model(name, args.seed)
    model64 = copy.deepcopy(model).double()
    x = make_input(size, args.seed)
    label = f"{name} ({size} px)"
    x64 = x.double()
    wpath = os.path.join(tmp, f"{name}.safetensors")
    save_file(model.state_dict(), wpath)
    ipath = os.path.join(tmp, "input.safetensors")
    save_file({"input": x}, ipath)
    logits, logits64, t = pytorch_logits(name, model, model64, x, x64)
    logits_done = False
    for method in methods:
        out = os.path.join(tmp, f"{name}.{method}.safetensors")
        saved, secs = run_rsp(args, wpath, ipath, method, t, out, size)
        print(f"  {name} {method}: rsp {secs:.1f} s", file=sys.stderr)
        rel = saved["relevance"]
        explained = int(saved["target"].flatten()[0])
        if explained != t:
            sys.exit(f"{name} {method}: rsp explained class {explained}, not {t}")
        if not logits_done:
            scale = logits64.abs().max().item()
            d_rsp = (saved["logits"].double() - logits64).abs().max().item() / scale
            d_f32 = (logits.double() - logits64).abs().max().item() / scale
            rows.append((label, "logits", "PyTorch forward (f64)", fmt(d_rsp),
                         f"rel max error; top-1 class {t}; logit {logits[0, t].item():.4g}; "
                         f"PyTorch f32 vs f64 {fmt(d_f32)}"))
            logits_done = True
        for peer, fn, differs in peers_for(method, model):
            ref = fn(model, x, t)
            ref64 = fn(model64, x64, t)
            if tuple(ref.shape) != tuple(rel.shape):
                sys.exit(f"{name} {method} {peer}: shapes differ, rsp {tuple(rel.shape)} "
                         f"peer {tuple(ref.shape)}")
            note = (f"vs peer f64 {fmt(rel_l2(rel, ref64))}; "
                    f"peer f32 vs f64 {fmt(rel_l2(ref, ref64))}")
            if method == "gradcam":
                note += (f"; Captum f64 vs Grad-CAM written out in f64 "
                         f"{fmt(rel_l2(ref64, hand_gradcam(model64, x64, t)))}")
            if method.startswith("lrp"):
                note += (f"; sum rsp {rel.sum().item():.4g} peer {ref.sum().item():.4g} "
                         f"(logit {logits[0, t].item():.4g})")
            if differs:
                note += f"; differs from rsp by: {differs}"
            rows.append((label, method, peer, fmt(rel_l2(rel, ref)), note))
            print(f"  {label} {method} vs {peer}: {rows[-1][3]}", file=sys.stderr)
        if method == "gradient" and args.flip_draws > 0:
            dists, flips, total = flip_bound(model, x, t, args.seed, args.flip_draws)
            rows.append((label, "gradient", f"PyTorch f32 itself at x + {FLIP_DELTA:g}*N(0,1)",
                         fmt(float(np.median(dists))),
                         f"flip-conditioning bound: median of {len(dists)} draws (max "
                         f"{fmt(max(dists))}); ReLU units changing state per draw "
                         f"{min(flips)}-{max(flips)} of {total}"))


def table(rows, onnx=False):
    if onnx:
        lines = ["| model | exporter | method | peer | rel L2 (logits: rel max) | note |",
                 "|---|---|---|---|---|---|"]
    else:
        lines = ["| model | method | peer | rel L2 | note |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    return "\n".join(lines)


def versions(onnx=False):
    import importlib

    def ver(name):
        mod = importlib.import_module(name)
        return getattr(mod, "__version__", None) or _dist_version(name)

    libs = ["captum", "onnx", "onnxruntime", "onnxscript"] if onnx else ["captum", "zennit"]
    return (f"python {platform.python_version()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, "
            + "".join(f"{name} {ver(name)}, " for name in libs) + f"numpy {np.__version__}")


def machine_notes(rsp_bin):
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = subprocess.run([rsp_bin, "adapters"], capture_output=True, text=True).stdout
    adapter = next((line.strip() for line in out.splitlines() if line.strip()), "?")
    version = subprocess.run([rsp_bin, "--version"], capture_output=True, text=True).stdout.strip()
    return (f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}; "
            f"{version} on its first adapter: {adapter}")


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - only for the printout
        return "?"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rsp-bin", required=True, help="path of a built rsp binary")
    p.add_argument("--size", type=int, default=64,
                   help="input side S (64 keeps lavapipe runs short)")
    p.add_argument("--models", nargs="+", default=SMALL + LARGE,
                   help="torchvision VGG/ResNet names (default: %(default)s)")
    p.add_argument("--all-methods", action="store_true",
                   help="every method on every model (default: gradient only on vgg16/resnet50)")
    p.add_argument("--large-sizes", type=int, nargs="+", metavar="S",
                   help="sizes for vgg16/resnet50 (default: --size); e.g. 64 224 to also see "
                        "float32 ReLU flips at full resolution (~1.5 min more on lavapipe)")
    p.add_argument("--flip-draws", type=int, default=5,
                   help="perturbation draws of the flip-conditioning bound (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rsp-arg", action="append", default=None,
                   help="extra rsp argument, repeatable (default: --autotune off)")
    p.add_argument("--out-md", help="also write the table, command and versions here")
    p.add_argument("--onnx", action="store_true",
                   help="the ONNX mode instead: --onnx-models exported with both torch.onnx "
                        "exporters, rsp --weights model.onnx (see the docstring)")
    p.add_argument("--onnx-models", nargs="+", default=ONNX_MODELS,
                   help="torchvision names for --onnx (default: %(default)s)")
    p.add_argument("--onnx-size", type=int, default=224, help="input side S for --onnx")
    p.add_argument("--onnx-methods", nargs="+", default=ONNX_METHODS,
                   help="rsp methods for --onnx (default: %(default)s)")
    args = p.parse_args()
    if args.rsp_arg is None:
        args.rsp_arg = ["--autotune", "off"]
    args.rsp_bin = os.path.abspath(args.rsp_bin)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True, warn_only=True)

    t0 = time.time()
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="rsp-peers-") as tmp:
        for name in (args.onnx_models if args.onnx else []):
            print(f"{name} ({args.onnx_size} px, ONNX)", file=sys.stderr)
            mdir = os.path.join(tmp, name)
            os.makedirs(mdir)
            run_onnx_model(args, name, mdir, rows, failures)
            shutil.rmtree(mdir)
        for name in ([] if args.onnx else args.models):
            large = name in LARGE
            methods = ["gradient"] if large and not args.all_methods else ALL_METHODS
            for size in ((args.large_sizes or [args.size]) if large else [args.size]):
                print(f"{name} ({size} px)", file=sys.stderr)
                run_model(args, name, size, methods, tmp, rows)
                for f in os.listdir(tmp):
                    if f.endswith(".safetensors"):
                        os.remove(os.path.join(tmp, f))
    elapsed = time.time() - t0
    md = table(rows, onnx=args.onnx)
    if failures:
        md += "\n\nFailures (command, then its output):\n" + "".join(
            f"\n- {model} {exporter} {method}: `{err.cmd}` (exit {err.code})\n\n"
            + "".join(f"      {line}\n" for line in err.text.splitlines())
            for model, exporter, method, err in failures)
    print(md)
    print(f"\n{len(rows)} rows in {elapsed:.0f} s; {versions(args.onnx)}")
    if args.out_md:
        cmd = " ".join([os.path.basename(sys.executable), *sys.argv])
        with open(args.out_md, "w") as f:
            f.write(f"{md}\n\nCommand: `{cmd}`\n\nRun time {elapsed:.0f} s; "
                    f"{versions(args.onnx)}; {platform.platform()}\n\n"
                    f"{machine_notes(args.rsp_bin)}\n")


if __name__ == "__main__":
    main()
