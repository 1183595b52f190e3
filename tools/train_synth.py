#!/usr/bin/env python3
"""Trains the two small multi-label classifiers of the synthetic benchmark.

Reads a dataset written by `rsp synth --out DIR` (VOC layout: JPEGImages, Annotations,
ImageSets/Main/{train,val,test}.txt, classes.txt), trains

  * synth_vgg:    a VGG with batch norm (torchvision `vgg*_bn` layout: `features.N`,
                  `classifier.M`)
  * synth_resnet: a Bottleneck ResNet (torchvision `conv1, bn1, layer1..4, fc` layout)

with BCE-with-logits over the class-presence labels, and writes float32 safetensors files
that `rsp` loads unchanged (`Model::from_file`). Preprocessing is exactly the crate's
(`src/preprocess.rs` with resize = crop = image size): RGB, /255, ImageNet mean/std, no
resize. Labels follow VOC classification: a class is positive when a non-difficult
instance is visible, negative when absent, and ignored (weight 0 in loss and metrics)
when it is present only as difficult objects.

Each file's safetensors metadata holds `rsp_synth`, a JSON string with the class names,
input size, dataset seed, architecture, test metrics and the PyTorch logits of the first
test images (the Rust test `tests/gpu/synth.rs` compares against them).

CPU only, all seeds fixed. The committed weights (see weights/README.md) came from

    rsp synth --out /tmp/synth30k --train 30000 --val 500 --test 200 --size 64 --seed 0
    python tools/train_synth.py --data /tmp/synth30k --out weights --models synth_vgg --threads 1
    python tools/train_synth.py --data /tmp/synth30k --out weights --models synth_resnet --threads 1

(the two trainings ran side by side; results can differ in the last bits with another
thread count or PyTorch build).
"""

import argparse
import hashlib
import json
import os
import random
import time
import xml.etree.ElementTree as ET

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
REFERENCE_IMAGES = 16


# --------------------------------------------------------------------------- data


def read_lines(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def load_split(root, split, classes):
    """Returns (uint8 images [N,H,W,3], targets [N,C] float, weights [N,C] float, ids)."""
    ids = read_lines(os.path.join(root, "ImageSets", "Main", f"{split}.txt"))
    index = {c: i for i, c in enumerate(classes)}
    images, targets, weights = [], [], []
    for id_ in ids:
        img = Image.open(os.path.join(root, "JPEGImages", f"{id_}.jpg")).convert("RGB")
        images.append(np.asarray(img, dtype=np.uint8))
        easy = np.zeros(len(classes), np.float32)
        present = np.zeros(len(classes), np.float32)
        tree = ET.parse(os.path.join(root, "Annotations", f"{id_}.xml"))
        for obj in tree.getroot().iter("object"):
            c = index[obj.find("name").text]
            present[c] = 1
            if obj.find("difficult").text.strip() == "0":
                easy[c] = 1
        targets.append(easy)
        # Present only as difficult objects: ignored.
        weights.append(1.0 - (present - easy))
    return np.stack(images), np.stack(targets), np.stack(weights), ids


def normalise(images_u8):
    """uint8 [N,3,H,W] -> float32 [N,3,H,W], exactly as src/preprocess.rs:
    (v / 255 - mean) / std in float32."""
    x = images_u8.float() / 255.0
    return (x - torch.from_numpy(MEAN)[:, None, None]) / torch.from_numpy(STD)[:, None, None]


def augment(x, gen):
    """Random flips and 90-degree rotations of a batch (labels are invariant)."""
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    if int(torch.randint(0, 2, (1,), generator=gen)):
        x = torch.flip(x, dims=(3,))
    return x


# --------------------------------------------------------------------------- models


class Vgg(nn.Module):
    """torchvision VGG layout: conv3x3(pad 1)+ReLU, 'M' = max pool 2x2; adaptive average
    pool to pool x pool; classifier Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear."""

    def __init__(self, cfg, pool, hidden, classes, bn=False, dropout=0.3):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(c, v, 3, padding=1))
                if bn:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU(inplace=True))
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(c * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class Bottleneck(nn.Module):
    """torchvision Bottleneck v1.5 (stride on the 3x3 conv), expansion 4."""

    def __init__(self, c_in, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or c_in != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class ResNet(nn.Module):
    """torchvision ResNet layout: 7x7/2 stem, BN, ReLU, 3x3/2 max pool, four stages
    (the first block of stages 2-4 strides 2), global average pool, fc."""

    def __init__(self, blocks, planes, stem, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = stem
        for s, (n, p) in enumerate(zip(blocks, planes)):
            stage = []
            for b in range(n):
                stage.append(Bottleneck(c, p, 2 if s > 0 and b == 0 else 1))
                c = p * 4
            setattr(self, f"layer{s + 1}", nn.Sequential(*stage))
        self.fc = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)  # start each block near identity

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for s in range(1, 5):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


ARCHS = {
    "synth_vgg": dict(
        kind="vgg",
        cfg=[12, "M", 24, "M", 48, 48, "M"],
        pool=4,
        hidden=128,
        bn=True,
        lr=3e-3,
        describe="VGG-BN, features [12, M, 24, M, 48, 48, M] (3x3 conv, BN, ReLU), "
        "adaptive avg pool 4x4, classifier 768-128-128-C",
    ),
    "synth_resnet": dict(
        kind="resnet",
        blocks=[2, 1, 1, 1],
        planes=[16, 32, 48, 64],
        stem=16,
        lr=3e-3,
        describe="ResNet, Bottleneck v1.5 [2, 1, 1, 1], stem 16 (7x7/2 + max pool), "
        "planes 16/32/48/64 (block outputs 64/128/192/256), global avg pool, fc 256-C",
    ),
}


def build(name, classes):
    a = ARCHS[name]
    if a["kind"] == "vgg":
        return Vgg(a["cfg"], a["pool"], a["hidden"], classes, bn=a["bn"])
    return ResNet(a["blocks"], a["planes"], a["stem"], classes)


# --------------------------------------------------------------------------- metrics


def average_precision(scores, labels):
    """Non-interpolated AP (mean precision at each positive, ties broken by order)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0.5
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def metrics(logits, targets, weights, classes):
    pred = (logits > 0).astype(np.float32)
    correct = (pred == targets) | (weights == 0)
    per_class_acc = [
        float(((pred[:, c] == targets[:, c])[weights[:, c] > 0]).mean())
        for c in range(len(classes))
    ]
    aps = [
        average_precision(logits[weights[:, c] > 0, c], targets[weights[:, c] > 0, c])
        for c in range(len(classes))
    ]
    return {
        "label_accuracy": float(((pred == targets)[weights > 0]).mean()),
        "exact_match": float(correct.all(axis=1).mean()),
        "mAP": float(np.nanmean(aps)),
        "per_class_accuracy": dict(zip(classes, [round(a, 4) for a in per_class_acc])),
        "per_class_AP": dict(zip(classes, [round(a, 4) for a in aps])),
    }


@torch.no_grad()
def predict(model, x, batch=256):
    model.eval()
    return torch.cat(
        [model(normalise(x[i : i + batch])) for i in range(0, len(x), batch)]
    ).numpy()


# --------------------------------------------------------------------------- training


def train(name, data, classes, args):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    # channels_last only for speed on CPU; the saved state dict is the same.
    model = build(name, len(classes)).to(memory_format=torch.channels_last)
    xtr, ytr, wtr = data["train"]
    xva, yva, wva = data["val"]
    lr = ARCHS[name]["lr"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i : i + args.batch]
            x = augment(normalise(xtr[idx]), gen).contiguous(memory_format=torch.channels_last)
            loss = F.binary_cross_entropy_with_logits(model(x), ytr[idx], weight=wtr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        m = metrics(predict(model, xva), yva.numpy(), wva.numpy(), classes)
        print(
            f"{name} epoch {epoch + 1}/{args.epochs}: loss {total / len(xtr):.4f}, "
            f"val label acc {m['label_accuracy']:.4f}, exact {m['exact_match']:.4f}, "
            f"mAP {m['mAP']:.4f} ({time.time() - start:.0f} s)",
            flush=True,
        )
    return model, time.time() - start


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="dataset written by `rsp synth --out DIR`")
    p.add_argument("--out", default="weights", help="directory for the .safetensors files")
    p.add_argument("--models", default="synth_vgg,synth_resnet")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dataset-seed", type=int, default=0, help="recorded in the metadata")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    random.seed(args.seed)
    np.random.seed(args.seed)

    classes = read_lines(os.path.join(args.data, "classes.txt"))
    data, ids = {}, {}
    for split in ["train", "val", "test"]:
        imgs, y, w, ids[split] = load_split(args.data, split, classes)
        # Kept as uint8 [N,3,H,W]; normalised per batch.
        imgs = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))
        data[split] = (imgs, torch.from_numpy(y), torch.from_numpy(w))
        print(f"{split}: {len(imgs)} images {imgs.shape[2]}x{imgs.shape[3]}", flush=True)
    size = int(data["train"][0].shape[2])

    os.makedirs(args.out, exist_ok=True)
    report = {}
    for name in args.models.split(","):
        model, seconds = train(name, data, classes, args)
        xte, yte, wte = data["test"]
        logits = predict(model, xte)
        m = metrics(logits, yte.numpy(), wte.numpy(), classes)
        m["train_seconds"] = round(seconds, 1)
        n_ref = min(REFERENCE_IMAGES, len(xte))
        meta = {
            "classes": classes,
            "input_size": size,
            "dataset_seed": args.dataset_seed,
            "train_images": len(data["train"][0]),
            "architecture": ARCHS[name]["describe"],
            "test_metrics": {k: m[k] for k in ["label_accuracy", "exact_match", "mAP"]},
            "reference_ids": ids["test"][:n_ref],
            "reference_logits": [[round(float(v), 5) for v in row] for row in logits[:n_ref]],
        }
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        path = os.path.join(args.out, f"{name}.safetensors")
        save_file(state, path, metadata={"rsp_synth": json.dumps(meta)})
        params = sum(v.numel() for k, v in state.items() if v.is_floating_point())
        m.update(
            file=path,
            bytes=os.path.getsize(path),
            sha256=sha256(path),
            parameters=params,
            architecture=ARCHS[name]["describe"],
        )
        report[name] = m
        print(f"{name} test: {json.dumps(m, indent=1)}", flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
