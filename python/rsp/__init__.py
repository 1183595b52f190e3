"""rsp: Relative Sectional Propagation (Nam, Choi, Lee, AAAI 2021) and the methods it is
compared with, on any GPU through wgpu (Vulkan, Metal, DX12; lavapipe on a CPU), with
numpy arrays in and out. No CUDA and no PyTorch needed.

    import numpy as np, rsp
    ex = rsp.Explainer(weights="weights/synth_vgg.safetensors")
    x = rsp.load_image("cat.png", size=64)[None]      # [1, 3, 64, 64], normalised
    e = ex.explain(x)                                  # RSP for the top class
    rgb = rsp.render(e.heatmap[0])                     # uint8 [64, 64, 3]

The GPU work runs with the GIL released, so other Python threads keep running.
"""

import base64
import html
from dataclasses import dataclass, field
from os import PathLike, fspath
from pathlib import PurePath
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from . import _rsp

__all__ = ["adapters", "eval_miou", "eval_pointing_game", "Explainer", "Explanation",
           "EXPLAIN_DEFAULTS", "Grid", "load_image", "render"]

#: The defaults of :meth:`Explainer.explain`, the engine's (and the command line's).
EXPLAIN_DEFAULTS: Dict[str, object] = _rsp.explain_defaults()


def adapters(backend: str = "auto") -> List[dict]:
    """Every GPU adapter wgpu finds (name, backend, type, driver, limits, features)."""
    return _rsp.adapters(backend)


def load_image(path: Union[str, PathLike], size: int = 224) -> np.ndarray:
    """An image file preprocessed as the CLI does (shorter side resized to
    ``size * 256 / 224``, centre crop ``size``, ImageNet normalisation): float32
    ``[3, size, size]``."""
    return _rsp.load_image_array(fspath(path), size)


def render(heatmap: np.ndarray, image: Optional[np.ndarray] = None, cmap: str = "bwr",
           alpha: float = 0.5) -> np.ndarray:
    """An ``[H, W]`` map as uint8 RGB ``[H, W, 3]``, as the CLI draws it. ``cmap``:
    ``bwr`` (blue, white at 0, red: red = evidence for the target, blue = against),
    ``seismic``, ``coldnhot`` (Zennit's), ``jet`` (Grad-CAM's convention), ``gray``.
    Maps with negative values, and any map on a diverging colour map, are scaled by
    their max |value| so that zero stays zero; a non-negative map on ``jet``/``gray``
    is min-max normalised. Over ``image`` (uint8 ``[H, W, 3]``) if given, with opacity
    ``0.7 * alpha`` where the map is 0 up to ``1.7 * alpha`` (at most 1) at its
    strongest."""
    heatmap = np.asarray(heatmap)
    if heatmap.dtype != np.float32:
        heatmap = heatmap.astype(np.float32)
    if image is not None:
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8:
            raise ValueError(f"image: expected uint8 [H, W, 3], got {image.dtype}")
    return _rsp.render_map(np.ascontiguousarray(heatmap), image, cmap, float(alpha))


@dataclass
class Explanation:
    """The result of :meth:`Explainer.explain` for a batch of N images."""

    relevance: np.ndarray
    """Pixel relevance ``[N, 3, H, W]`` (``[N, 1, H, W]`` for Grad-CAM)."""
    heatmap: np.ndarray
    """Signed map ``[N, H, W]``: the channel sum of ``relevance``."""
    init: np.ndarray
    """RSP's initial relevance at the explanation layer, or a baseline's seed at the
    logits."""
    logits: np.ndarray
    """``[N, classes]``"""
    target: np.ndarray
    """The explained class per image (int64; -1 where none was)."""
    layers: Dict[str, np.ndarray] = field(default_factory=dict)
    """Relevance at the input of every module (torchvision names), when asked for."""


Input = Union[np.ndarray, Sequence[Union[str, PathLike]]]


class Explainer:
    """A classifier on a GPU, ready to explain.

    Give exactly one of ``model`` (a hub name such as ``"vgg16"`` or ``"resnet50"``;
    downloaded once and checked), ``weights`` (an ONNX file, any ReLU CNN exported with
    ``torch.onnx.export``, or a safetensors file with torchvision VGG/ResNet names)
    or ``state_dict`` (any mapping of names to arrays: numpy arrays, or torch tensors
    after ``.detach().cpu()``), so a fine-tuned torchvision model works without writing a
    file. ``backend``: ``auto``, ``vulkan``, ``metal``, ``dx12`` or ``gl``.
    ``precision``: ``f32`` (default; parity with the authors' code) or ``f16``
    (weights, activations and RSP's relevance stored in f16, arithmetic in f32, and on
    GPUs with matrix units f16 products accumulated in f32; maps drift from ``f32`` by
    the amounts docs/precision.md gives). ``size``: the side images are resized to
    (default: the size an ONNX model was exported for, else 224). ``explain_layer``: the
    layer RSP's initial relevance and Grad-CAM start from (``rsp inspect FILE`` lists
    them; default: the last image-shaped ReLU or concatenation before the head).
    """

    def __init__(self, model: Optional[str] = None, weights: Optional[Union[str, PathLike]] = None,
                 state_dict=None, backend: str = "auto", precision: str = "f32",
                 size: Optional[int] = None, explain_layer: Optional[str] = None):
        given = [a is not None for a in (model, weights, state_dict)]
        if sum(given) != 1:
            raise ValueError("give exactly one of model=, weights= or state_dict=")
        tensors = None
        if state_dict is not None:
            tensors = {}
            for name, value in state_dict.items():
                arr = np.asarray(value)
                if arr.dtype.kind in "iub":
                    continue  # e.g. num_batches_tracked: not used for inference
                if arr.dtype.kind != "f":
                    raise ValueError(f"state_dict['{name}']: expected a float array, got {arr.dtype}")
                tensors[str(name)] = np.ascontiguousarray(arr, dtype=np.float32)
        self._engine = _rsp.Engine(
            weights=None if weights is None else fspath(weights),
            model=model,
            tensors=tensors,
            backend=backend,
            precision=precision,
            explain_layer=explain_layer,
        )
        self.size = size if size is not None else (self._engine.input_size or 224)

    @property
    def num_classes(self) -> int:
        return self._engine.num_classes

    @property
    def explain_layer(self) -> Optional[str]:
        """The layer RSP's initial relevance and Grad-CAM start from."""
        return self._engine.explain_layer

    @property
    def description(self) -> str:
        """E.g. ``VGG (13 convs) -> 1000 classes``."""
        return self._engine.description

    @property
    def readout(self) -> str:
        """``softmax``, or ``sigmoid`` for multi-label models (from the weights'
        metadata, e.g. the synthetic benchmark's)."""
        return self._engine.readout

    @property
    def class_names(self) -> Optional[List[str]]:
        """Class names from the weights' metadata, if any."""
        return self._engine.class_names

    @property
    def adapter(self) -> str:
        """The name of the GPU adapter in use."""
        return self._engine.adapter

    def _batch(self, x: Input) -> np.ndarray:
        if isinstance(x, np.ndarray):
            if x.dtype != np.float32:
                raise ValueError(f"x: expected float32 [N, 3, H, W], got {x.dtype}")
            return np.ascontiguousarray(x)
        if isinstance(x, (str, PathLike)):
            x = [x]
        return np.stack([load_image(p, self.size) for p in x])

    def explain(self, x: Input, method: Optional[str] = None, targets=None,
                init: Optional[str] = None, compare_k: Optional[int] = None,
                batch_size: Optional[int] = None, record_layers: Optional[bool] = None,
                smooth: Optional[int] = None, noise: Optional[float] = None) -> Explanation:
        """Explains ``x``: a float32 ``[N, 3, H, W]`` array already normalised, or image
        paths (preprocessed at ``size``). ``method``: ``rsp``, ``gradcam``,
        ``gradient``, ``gradxinput``, ``lrp-eps``, ``lrp-ab``, ``clrp``, ``sglrp``,
        ``rap``. ``targets``: a class per image, one class for all, or ``None`` for
        each image's top prediction. ``init`` (RSP): ``gradcam`` or ``comparative``
        (with ``compare_k`` classes). ``smooth=N`` averages every map over N noisy
        copies of each image (SmoothGrad; noise std ``noise * (max - min)`` of the
        image), for the class explained on the clean image. An option left ``None``
        takes the engine's default, the command line's too (:data:`EXPLAIN_DEFAULTS`:
        RSP, ``gradcam``, ``compare_k=3``, ``batch_size=8``, ``noise=0.15``)."""
        batch = self._batch(x)
        if targets is not None:
            targets = [int(t) for t in np.atleast_1d(np.asarray(targets)).tolist()]
        given = dict(method=method, init=init, compare_k=compare_k, batch_size=batch_size,
                     record_layers=record_layers, smooth=smooth,
                     noise=None if noise is None else float(noise))
        options = {k: v for k, v in given.items() if v is not None}
        out = self._engine.explain(batch, targets=targets, **options)
        return Explanation(**out)

    def grid(self, images: Sequence[Union[str, PathLike]], classes=None,
             methods: Sequence[str] = ("rsp", "gradcam"), top: int = 2, cmap: str = "bwr",
             alpha: float = 0.5) -> "Grid":
        """Maps of several images × classes × methods side by side, for a notebook (what
        ``rsp serve`` shows in a browser): the returned :class:`Grid` displays itself as
        an HTML table (rows image × class, one column per method; the maps drawn over
        the photos with :func:`render`) and keeps the maps. ``classes``: one list of
        classes per image, or ``None`` for each image's ``top`` predictions. Each
        method is one :meth:`explain` call over every (image, class) pair."""
        paths = [fspath(p) for p in images]
        photos = [_rsp.load_photo(p, self.size) for p in paths]
        batch = np.stack([load_image(p, self.size) for p in paths])
        if classes is None:
            classes = [[c for c, _ in row] for row in self.predict(batch, k=top)]
        if len(classes) != len(paths):
            raise ValueError(f"classes: {len(classes)} lists for {len(paths)} images")
        pairs = [(i, int(c)) for i, cs in enumerate(classes) for c in cs]
        rows = np.stack([batch[i] for i, _ in pairs])
        targets = [c for _, c in pairs]
        maps = {}
        for method in methods:
            e = self.explain(rows, method=method, targets=targets)
            for j, (i, c) in enumerate(pairs):
                maps[(i, c, method)] = e.heatmap[j]
        names = self.class_names
        return Grid(paths=paths, photos=photos, pairs=pairs, methods=list(methods), maps=maps,
                    class_names=names, cmap=cmap, alpha=alpha)

    def predict(self, x: Input, k: int = 5, batch_size: int = 8) -> List[List[tuple]]:
        """The top ``k`` ``(class, probability)`` pairs per image: softmax of the
        logits, or a sigmoid per class for multi-label models (:attr:`readout`)."""
        batch = self._batch(x)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        logits = np.concatenate([self._engine.logits(batch[i:i + batch_size])
                                 for i in range(0, len(batch), batch_size)])
        z = logits.astype(np.float64)
        if self.readout == "sigmoid":
            probs = 1.0 / (1.0 + np.exp(-z))
        else:
            z = np.exp(z - z.max(axis=1, keepdims=True))
            probs = z / z.sum(axis=1, keepdims=True)
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return [[(int(c), float(probs[i, c])) for c in row] for i, row in enumerate(top)]


PathArg = Union[str, PathLike]


def _eval(metric: str, weights, dataset: PathArg, out: Optional[PathArg], methods, options) -> dict:
    if isinstance(weights, (str, PathLike)):
        weights = [weights]
    if isinstance(methods, str):
        methods = [methods]
    given = {k: v for k, v in options.items() if v is not None}
    for key in ("root", "difficult"):
        if key in given:
            given[key] = fspath(given[key])
    if out is not None:
        given["out"] = fspath(out)
    return _rsp.eval_map(metric, [fspath(w) for w in weights], fspath(dataset),
                         methods=None if methods is None else list(methods), **given)


def eval_pointing_game(weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
                       out: Optional[PathArg] = None, methods: Optional[Sequence[str]] = None,
                       root: Optional[PathArg] = None, split: Optional[str] = None,
                       size: Optional[int] = None, norm: Optional[str] = None,
                       batch: Optional[int] = None, limit: Optional[int] = None,
                       tolerance: Optional[float] = None, difficult: Optional[PathArg] = None,
                       backend: str = "auto") -> dict:
    """The Pointing Game as ``rsp eval pointing-game`` runs it, on the same runner:
    ``dataset`` is ``voc07``/``coco14`` (with ``root``) or a folder in VOC layout (such
    as ``rsp synth`` writes); one column group per ``weights`` file; ``methods`` any of
    :meth:`Explainer.explain`'s and ``center`` (default: all). Resumable logs and the
    table (CSV, Markdown) go to ``out`` (default ``rsp-eval``), under the command
    line's names; a rerun resumes from the logs. Returns ``{"title", "columns",
    "rows": {method: [percent or None per column]}}``. Options left ``None`` take the
    command line's defaults (224 px, torchvision normalisation, 16 pairs per batch,
    15 px tolerance, split ``test``)."""
    return _eval("pointing-game", weights, dataset, out, methods,
                 dict(root=root, split=split, size=size, norm=norm, batch=batch, limit=limit,
                      tolerance=tolerance, difficult=difficult, backend=backend))


def eval_miou(weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
              out: Optional[PathArg] = None, methods: Optional[Sequence[str]] = None,
              root: Optional[PathArg] = None, split: Optional[str] = None,
              size: Optional[int] = None, norm: Optional[str] = None,
              batch: Optional[int] = None, limit: Optional[int] = None,
              threshold: Optional[str] = None, backend: str = "auto") -> dict:
    """mIoU of the binarised maps as ``rsp eval miou`` runs it (see
    :func:`eval_pointing_game` for the arguments and the result); ``threshold``:
    ``"mean"`` (default: the mean of the map's positive values) or a fraction of the
    map's maximum such as ``"0.5"``."""
    return _eval("miou", weights, dataset, out, methods,
                 dict(root=root, split=split, size=size, norm=norm, batch=batch, limit=limit,
                      threshold=None if threshold is None else str(threshold),
                      backend=backend))


@dataclass
class Grid:
    """Maps of images × classes × methods (:meth:`Explainer.grid`); shown as an HTML table
    in Jupyter (``_repr_html_``), or written with :meth:`save`."""

    paths: List[str]
    photos: List[np.ndarray]
    pairs: List[tuple]
    """(image index, class) per row."""
    methods: List[str]
    maps: Dict[tuple, np.ndarray]
    """``[H, W]`` map per (image index, class, method)."""
    class_names: Optional[List[str]] = None
    cmap: str = "bwr"
    alpha: float = 0.5

    def overlay(self, image: int, cls: int, method: str) -> np.ndarray:
        """One cell: the map over its photo (uint8 ``[H, W, 3]``), as :func:`render`."""
        return render(self.maps[(image, cls, method)], self.photos[image], self.cmap, self.alpha)

    def _repr_html_(self) -> str:
        def cell(rgb):
            png = base64.b64encode(_rsp.encode_png(np.ascontiguousarray(rgb))).decode()
            return f'<td><img src="data:image/png;base64,{png}" width="160"></td>'

        head = "".join(f"<th>{html.escape(m)}</th>" for m in self.methods)
        body = []
        for i, c in self.pairs:
            name = self.class_names[c] if self.class_names and c < len(self.class_names) else str(c)
            label = html.escape(f"{PurePath(self.paths[i]).name} / {name}")
            cells = "".join(cell(self.overlay(i, c, m)) for m in self.methods)
            body.append(f"<tr><td>{label}</td>{cells}</tr>")
        return (f'<table class="rsp-grid"><tr><th>image / class</th>{head}</tr>'
                f'{"".join(body)}</table>')

    def save(self, path: Union[str, PathLike]) -> None:
        """Writes the table as a self-contained HTML page."""
        with open(fspath(path), "w", encoding="utf-8") as f:
            f.write(f"<!doctype html><meta charset='utf-8'>{self._repr_html_()}")
