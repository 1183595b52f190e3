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

Usage (the full table: 6-8 minutes on a 2-core CPU with lavapipe, rsp's Vulkan CPU device):

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch torchvision captum zennit safetensors numpy
    /tmp/peers-venv/bin/python benches/peers.py --rsp-bin target/release/rsp \\
        --size 64 --large-sizes 64 224 --out-md /tmp/peers_results.md

rsp runs with --autotune off (its fixed kernel heuristics; nothing timed or cached)
unless --rsp-arg is given, e.g. --rsp-arg=--exact-kernels.

Prints a Markdown table (model | method | peer | rel L2 | note) and, with --out-md,
writes it (plus the command and versions) to that file. All temporary files (weights,
inputs, rsp outputs) live in a tempfile.TemporaryDirectory.
"""

import argparse
import copy
import os
import platform
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


def make_model(name, seed):
    """torchvision `name` with seeded random weights, non-trivial biases and BN, eval mode."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
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


def captum_gradcam(model, x, t):
    from captum.attr import LayerAttribution, LayerGradCam

    layer, _ = explanation_layer(model)
    cam = LayerGradCam(model, layer).attribute(
        x.clone().requires_grad_(), target=t, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]),
                                        interpolate_mode="bilinear").detach()


def hand_gradcam(model, x, t):
    """Grad-CAM written out (a check on the Captum call, not a peer)."""
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


def relu_masks(model, x):
    masks = []

    def hook(_m, _i, out):
        masks.append((out > 0).flatten().clone())

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return torch.cat(masks)


def flip_bound(model, x, t, seed, draws):
    """PyTorch's own float32 gradient under `draws` input perturbations x + 1e-6 * N(0,1):
    ([rel L2 per draw], [ReLU units whose state flips, per draw], ReLU units in all)."""
    gen = torch.Generator().manual_seed(seed + 3)
    g0 = captum_gradient(model, x, t)
    m0 = relu_masks(model, x)
    dists, flips = [], []
    for _ in range(draws):
        xp = x + FLIP_DELTA * torch.randn(x.shape, generator=gen)
        dists.append(rel_l2(captum_gradient(model, xp, t), g0))
        flips.append(int((relu_masks(model, xp) != m0).sum()))
    return dists, flips, m0.numel()


# ------------------------------------------------------------------------------- rsp


def run_rsp(args, weights, inp, method, target, out, size):
    cmd = [args.rsp_bin, "--weights", weights, "--method", method, "--target", str(target),
           "--size", str(size), "--save-relevance", out,
           "--out", os.path.join(os.path.dirname(out), "png"), *args.rsp_arg, inp]
    env = dict(os.environ, RSP_CACHE_DIR=os.path.join(os.path.dirname(out), "cache"))
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"rsp failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return load_file(out), time.time() - t0


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
    with torch.no_grad():
        logits = model(x)
        logits64 = model64(x64)
    t = int(logits.argmax(1)[0])
    if int(logits64.argmax(1)[0]) != t:
        print(f"warning: {name}: float64 top-1 differs from float32 top-1", file=sys.stderr)
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


def table(rows):
    lines = ["| model | method | peer | rel L2 | note |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    return "\n".join(lines)


def versions():
    import captum
    import zennit

    def ver(mod):
        return getattr(mod, "__version__", None) or _dist_version(mod.__name__)

    return (f"python {platform.python_version()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, captum {ver(captum)}, zennit {ver(zennit)}, "
            f"numpy {np.__version__}")


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
    args = p.parse_args()
    if args.rsp_arg is None:
        args.rsp_arg = ["--autotune", "off"]
    args.rsp_bin = os.path.abspath(args.rsp_bin)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True, warn_only=True)

    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rsp-peers-") as tmp:
        for name in args.models:
            large = name in LARGE
            methods = ["gradient"] if large and not args.all_methods else ALL_METHODS
            for size in ((args.large_sizes or [args.size]) if large else [args.size]):
                print(f"{name} ({size} px)", file=sys.stderr)
                run_model(args, name, size, methods, tmp, rows)
                for f in os.listdir(tmp):
                    if f.endswith(".safetensors"):
                        os.remove(os.path.join(tmp, f))
    elapsed = time.time() - t0
    md = table(rows)
    print(md)
    print(f"\n{len(rows)} rows in {elapsed:.0f} s; {versions()}")
    if args.out_md:
        cmd = " ".join([os.path.basename(sys.executable), *sys.argv])
        with open(args.out_md, "w") as f:
            f.write(f"{md}\n\nCommand: `{cmd}`\n\nRun time {elapsed:.0f} s; {versions()}; "
                    f"{platform.platform()}\n\n{machine_notes(args.rsp_bin)}\n")


if __name__ == "__main__":
    main()
