"""rsp: Relative Sectional Propagation (Nam, Choi, Lee, AAAI 2021) and the methods it is
compared with, on any GPU through wgpu (Vulkan, Metal, DX12; lavapipe on a CPU). Arrays
in (numpy, torch CPU tensors, anything with ``__array__`` or DLPack), numpy out. No CUDA
and no PyTorch needed. Installed as ``pip install rsp-xai``.

    import rsp
    with rsp.Explainer(weights="weights/synth_vgg.safetensors") as ex:
        x = rsp.load_image("cat.png", size=64)[None]   # [1, 3, 64, 64], normalised
        e = ex.explain(x)                               # RSP for the top class
        rgb = rsp.render(e.heatmap[0])                  # uint8 [64, 64, 3]

Arrays follow one rule everywhere: any floating-point dtype is converted to float32
(float64 and float16 included; the engine computes in float32), any memory layout is
copied into C order, and integer arrays are refused where values must be normalised
floats. The GPU work runs with the GIL released, so other Python threads keep running.
"""

import base64
import html
import os
import tempfile
from dataclasses import dataclass, field
from os import PathLike, fspath
from pathlib import PurePath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from typing import Literal

import numpy as np
import numpy.typing as npt

from . import _rsp

__all__ = ["adapters", "eval_faithfulness", "eval_merge", "eval_miou", "eval_pointing_game",
           "eval_sensitivity", "Explainer", "Explanation",
           "EXPLAIN_DEFAULTS", "Grid", "load_image", "render", "Method", "EvalMethod",
           "InitKind", "Backend", "Precision", "Autotune", "ColorMap",
           "FaithfulnessMetric", "ShardArg"]

#: An attribution method, by the name the command line uses.
Method = Literal["rsp", "gradcam", "gradient", "gradxinput", "lrp-eps", "lrp-ab", "clrp",
                 "sglrp", "rap"]
#: A method a benchmark scores: the attribution methods and the Pointing Game's
#: ``center`` baseline.
EvalMethod = Literal["rsp", "gradcam", "gradient", "gradxinput", "lrp-eps", "lrp-ab", "clrp",
                     "sglrp", "rap", "center"]
#: RSP's initial relevance.
InitKind = Literal["gradcam", "comparative"]
#: The wgpu backend (``auto``: the platform's native API, OpenGL as a fallback).
Backend = Literal["auto", "vulkan", "metal", "dx12", "gl"]
#: ``f32`` (parity with the authors' code) or ``f16`` storage (docs/precision.md).
Precision = Literal["f32", "f16"]
#: Kernel choice by measurement: ``off`` (fixed heuristics, nothing timed or written;
#: the default here), ``on`` (reuse the cached choices, time what is missing: the
#: command line's default), ``fresh`` (time everything again).
Autotune = Literal["off", "on", "fresh"]
#: Colour maps of :func:`render`.
ColorMap = Literal["bwr", "seismic", "coldnhot", "jet", "gray"]

PathArg = Union[str, "PathLike[str]"]
FloatArray = npt.NDArray[np.float32]

#: The defaults of :meth:`Explainer.explain`, the engine's (and the command line's).
EXPLAIN_DEFAULTS: Dict[str, object] = _rsp.explain_defaults()


def adapters(backend: Backend = "auto") -> List[Dict[str, Any]]:
    """Every GPU adapter wgpu finds for ``backend``: its ``index`` and ``pci_bus_id``
    (what ``adapter=`` chooses by), name, backend, type, driver, limits, features."""
    return _rsp.adapters(backend)


def _adapter(adapter: Optional[str]) -> Optional[str]:
    """``adapter=``, else ``$RSP_ADAPTER``, else ``None`` (the best adapter by type)."""
    return adapter if adapter is not None else (os.environ.get("RSP_ADAPTER") or None)


def _is_pil(value: object) -> bool:
    return type(value).__module__.startswith("PIL.") and callable(getattr(value, "convert", None))


def _numpy(name: str, value: object) -> np.ndarray:
    """``value`` as a numpy array, without a copy where it can: a numpy array, a torch
    CPU tensor (through DLPack; one that tracks gradients is detached, it is only read),
    anything with ``__array__`` or ``__dlpack__``, nested sequences."""
    if isinstance(value, np.ndarray):
        return value
    if getattr(value, "requires_grad", False) and callable(getattr(value, "detach", None)):
        value = value.detach()  # type: ignore[attr-defined]
    device = getattr(value, "device", None)
    kind = getattr(device, "type", None)
    if isinstance(kind, str) and kind != "cpu":
        raise ValueError(f"{name}: a tensor on {device}; pass it on the CPU (tensor.cpu()): "
                         f"rsp copies it to its own GPU device")
    if hasattr(value, "__dlpack__"):
        try:
            return np.from_dlpack(value)
        except (TypeError, BufferError, RuntimeError, ValueError):
            pass  # e.g. bfloat16, which numpy has no dtype for; __array__ may still work
    what = ("expected an array (numpy, a torch CPU tensor, anything with __array__ or "
            f"DLPack), got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name}: {what}: {e}") from None
    if arr.dtype == object:
        raise ValueError(f"{name}: {what}")
    return arr


def _floats(name: str, value: object, what: str) -> FloatArray:
    """The one rule for float inputs: floating dtypes to float32, C order."""
    arr = _numpy(name, value)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name}: expected {what} of a floating-point dtype, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _rgb_pixels(image: object) -> npt.NDArray[np.uint8]:
    """A PIL image or uint8 ``[H, W, 3]`` array as contiguous RGB pixels."""
    if _is_pil(image):
        image = image.convert("RGB")  # type: ignore[attr-defined]
    arr = _numpy("image", image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image: expected a path, a PIL image or RGB pixels (uint8 [H, W, 3]), "
                         f"got a {arr.dtype} array of shape {list(arr.shape)}")
    return np.ascontiguousarray(arr)


ImageArg = Union[str, "PathLike[str]", Any]


def load_image(image: ImageArg, size: int = 224) -> FloatArray:
    """An image preprocessed as the CLI does (shorter side resized to
    ``size * 256 / 224``, centre crop ``size``, ImageNet normalisation): float32
    ``[3, size, size]``. ``image``: a path (PNG or JPEG), a PIL image (any mode; converted
    to RGB) or RGB pixels as a uint8 ``[H, W, 3]`` array."""
    if isinstance(image, (str, PathLike)):
        return _rsp.load_image_array(fspath(image), size)
    return _rsp.preprocess_rgb(_rgb_pixels(image), size)


def render(heatmap: Any, image: Optional[Any] = None, cmap: ColorMap = "bwr",
           alpha: float = 0.5) -> npt.NDArray[np.uint8]:
    """A ``heatmap`` ``[H, W]`` (any float array) as uint8 RGB ``[H, W, 3]``, as the CLI
    draws it. ``cmap``:
    ``bwr`` (blue, white at 0, red: red = evidence for the target, blue = against),
    ``seismic``, ``coldnhot`` (Zennit's), ``jet`` (Grad-CAM's convention), ``gray``.
    Maps with negative values, and any map on a diverging colour map, are scaled by
    their max |value| so that zero stays zero; a non-negative map on ``jet``/``gray``
    is min-max normalised. Over ``image`` (uint8 ``[H, W, 3]``) if given, with opacity
    ``0.7 * alpha`` where the map is 0 up to ``1.7 * alpha`` (at most 1) at its
    strongest (``alpha`` in [0, 1])."""
    heat = _floats("heatmap", heatmap, "a map [H, W]")
    photo = None
    if image is not None:
        photo = np.ascontiguousarray(_numpy("image", image))
        if photo.dtype != np.uint8:
            raise ValueError(f"image: expected uint8 [H, W, 3], got {photo.dtype}")
    return _rsp.render_map(heat, photo, cmap, float(alpha))


@dataclass
class Explanation:
    """The result of :meth:`Explainer.explain` for a batch of N images."""

    relevance: FloatArray
    """Pixel relevance ``[N, 3, H, W]`` (``[N, 1, H, W]`` for Grad-CAM)."""
    heatmap: FloatArray
    """Signed map ``[N, H, W]``: the channel sum of ``relevance``."""
    init: FloatArray
    """RSP's initial relevance at the explanation layer, or a baseline's seed at the
    logits."""
    logits: FloatArray
    """``[N, classes]``"""
    target: npt.NDArray[np.int64]
    """The explained class per image (int64; -1 where none was)."""
    layers: Dict[str, FloatArray] = field(default_factory=dict)
    """Relevance at the input of every module (torchvision names), when asked for."""

    def save(self, path: PathArg, images: Optional[Sequence[int]] = None) -> None:
        """Writes ``relevance``, ``heatmap``, ``init``, ``logits`` and ``target`` as
        ``rsp run --save-relevance`` does (safetensors), for all images or the batch
        rows ``images``; atomically (a temporary file in the same folder, renamed), so
        an interrupted write leaves no half file."""
        rows = list(range(len(self.target))) if images is None else [int(i) for i in images]
        data = _rsp.relevance_file(
            np.ascontiguousarray(self.relevance[rows]), np.ascontiguousarray(self.heatmap[rows]),
            np.ascontiguousarray(self.init[rows]), np.ascontiguousarray(self.logits[rows]),
            [int(t) for t in self.target[rows]])
        _write_atomic(fspath(path), data)


def _write_atomic(path: str, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file in its folder, synced and renamed."""
    folder = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".rsp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


Input = Union[str, "PathLike[str]", Sequence[Union[str, "PathLike[str]"]], Any]
"""What :meth:`Explainer.explain` takes: a float array ``[N, 3, H, W]`` (or one image
``[3, H, W]``) already normalised — numpy, a torch CPU tensor, anything with
``__array__`` or DLPack — or image paths or PIL images, preprocessed at the explainer's
``size``."""


class Explainer:
    """A classifier on a GPU, ready to explain. Use it in a ``with`` block, or call
    :meth:`close`, to release the GPU device when done.

    Parameters (give exactly one of ``model``, ``weights``, ``state_dict``):

    - ``model``: a hub name such as ``"vgg16"`` or ``"resnet50"`` (downloaded once and
      checked).
    - ``weights``: an ONNX file (any ReLU CNN exported with ``torch.onnx.export``) or a
      safetensors file with torchvision VGG/ResNet names.
    - ``state_dict``: any mapping of names to arrays in torchvision naming (numpy arrays
      or torch tensors, converted by the rule of :mod:`rsp`), so a fine-tuned torchvision
      model works without writing a file.
    - ``backend``: ``auto``, ``vulkan``, ``metal``, ``dx12`` or ``gl``.
    - ``precision``: ``f32`` (default; parity with the authors' code) or ``f16``
      (weights, activations and RSP's relevance stored in f16, arithmetic in f32, and on
      GPUs with matrix units f16 products accumulated in f32; maps drift from ``f32`` by
      the amounts docs/precision.md gives).
    - ``size``: the side images are resized to (default: the size an ONNX model was
      exported for, else 224).
    - ``explain_layer``: the layer RSP's initial relevance and Grad-CAM start from
      (``rsp inspect FILE`` lists them; default: the last image-shaped ReLU or
      concatenation before the head).
    - ``autotune``: ``off`` (default: fixed kernels, nothing timed or written), ``on``
      (kernels chosen by measurement on this device, cached; the command line's
      default) or ``fresh``.
    - ``exact_kernels``: only kernel variants that reproduce the fallback's bits (no
      Winograd, no matrix units).
    - ``adapter``: which of the backend's adapters to open (:func:`adapters` lists
      them): ``"index:N"``, ``"pci:BUS"`` (e.g. ``"pci:0000:3b:00.0"``, as NVML and
      nvidia-smi report it) or ``"name:SUBSTRING"``; default ``$RSP_ADAPTER``, else
      the best adapter by type (discrete, integrated, virtual, CPU).
    """

    def __init__(self, model: Optional[str] = None, weights: Optional[PathArg] = None,
                 state_dict: Optional[Mapping[str, Any]] = None, backend: Backend = "auto",
                 precision: Precision = "f32", size: Optional[int] = None,
                 explain_layer: Optional[str] = None, autotune: Autotune = "off",
                 exact_kernels: bool = False, adapter: Optional[str] = None) -> None:
        given = [a is not None for a in (model, weights, state_dict)]
        if sum(given) != 1:
            raise ValueError("give exactly one of model=, weights= or state_dict=")
        tensors = None
        if state_dict is not None:
            tensors = {}
            for name, value in state_dict.items():
                arr = _numpy(f"state_dict['{name}']", value)
                if arr.dtype.kind in "iub":
                    continue  # e.g. num_batches_tracked: not used for inference
                tensors[str(name)] = _floats(f"state_dict['{name}']", arr, "a tensor")
        self._engine = _rsp.Engine(
            weights=None if weights is None else fspath(weights),
            model=model,
            tensors=tensors,
            backend=backend,
            precision=precision,
            explain_layer=explain_layer,
            autotune=autotune,
            exact_kernels=exact_kernels,
            adapter=_adapter(adapter),
        )
        self.size: int = size if size is not None else (self._engine.input_size or 224)

    def close(self) -> None:
        """Releases the GPU device and the model's memory on it (after a call still
        running in another thread). Later calls raise ``ValueError``; closing twice is
        harmless. A ``with`` block closes on exit."""
        self._engine.close()

    @property
    def closed(self) -> bool:
        return bool(self._engine.closed)

    def __enter__(self) -> "Explainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"on {self.adapter!r}"
        return f"<rsp.Explainer {self.description}, {state}>"

    @property
    def num_classes(self) -> int:
        return int(self._engine.num_classes)

    @property
    def explain_layer(self) -> Optional[str]:
        """The layer RSP's initial relevance and Grad-CAM start from."""
        return self._engine.explain_layer

    @property
    def description(self) -> str:
        """E.g. ``VGG (13 convs) -> 1000 classes``."""
        return str(self._engine.description)

    @property
    def readout(self) -> str:
        """``softmax``, or ``sigmoid`` for multi-label models (from the weights'
        metadata, e.g. the synthetic benchmark's)."""
        return str(self._engine.readout)

    @property
    def class_names(self) -> Optional[List[str]]:
        """Class names from the weights' metadata, if any."""
        return self._engine.class_names

    @property
    def adapter(self) -> str:
        """The name of the GPU adapter in use."""
        return str(self._engine.adapter)

    def _batch(self, x: Input) -> FloatArray:
        if isinstance(x, (str, PathLike)) or _is_pil(x):
            x = [x]
        if isinstance(x, (list, tuple)) and x and all(
                isinstance(p, (str, PathLike)) or _is_pil(p) for p in x):
            return np.stack([load_image(p, self.size) for p in x])
        batch = _numpy("x", x)
        if batch.dtype == np.uint8:
            raise ValueError("x: a uint8 array; pass normalised float images [N, 3, H, W], or "
                             "photos through rsp.load_image (a path, PIL image or uint8 "
                             "[H, W, 3] pixels)")
        batch = _floats("x", batch, "normalised images [N, 3, H, W]")
        if batch.ndim == 3 and batch.shape[0] == 3:
            batch = batch[None]
        return batch

    def explain(self, x: Input, method: Optional[Method] = None,
                targets: Union[None, int, Sequence[int], Any] = None,
                init: Optional[InitKind] = None, compare_k: Optional[int] = None,
                batch_size: Optional[int] = None, record_layers: Optional[bool] = None,
                smooth: Optional[int] = None, noise: Optional[float] = None) -> Explanation:
        """Explains ``x``: float images ``[N, 3, H, W]`` (or one ``[3, H, W]``) already
        normalised — a numpy array, a torch CPU tensor, anything with ``__array__`` or
        DLPack; float64/float16 converted to float32 — or image paths or PIL images
        (preprocessed at ``size``). ``method``: ``rsp``, ``gradcam``, ``gradient``,
        ``gradxinput``, ``lrp-eps``, ``lrp-ab``, ``clrp``, ``sglrp``, ``rap``.
        ``targets``: a class per image, one class for all, or ``None`` for each image's
        top prediction. ``init`` (RSP): ``gradcam`` or ``comparative`` (with
        ``compare_k`` classes). ``batch_size``: images per GPU pass. ``record_layers``:
        also return the relevance at every layer's input. ``smooth``: N averages every
        map over N noisy copies of each image (SmoothGrad) with ``noise`` the noise std
        as a fraction of the image's range (max - min), for the class explained on the
        clean image. An option left
        ``None`` takes the engine's default, the command line's too
        (:data:`EXPLAIN_DEFAULTS`: RSP, ``gradcam``, ``compare_k=3``, ``batch_size=8``,
        ``noise=0.15``)."""
        batch = self._batch(x)
        target_list = None
        if targets is not None:
            target_list = [int(t) for t in np.atleast_1d(_numpy("targets", targets)).tolist()]
        given: Dict[str, Any] = dict(method=method, init=init, compare_k=compare_k,
                                     batch_size=batch_size, record_layers=record_layers,
                                     smooth=smooth, noise=None if noise is None else float(noise))
        options = {k: v for k, v in given.items() if v is not None}
        out = self._engine.explain(batch, targets=target_list, **options)
        return Explanation(**out)

    def grid(self, images: Sequence[PathArg], classes: Optional[Sequence[Sequence[int]]] = None,
             methods: Sequence[Method] = ("rsp", "gradcam"), top: int = 2,
             cmap: ColorMap = "bwr", alpha: float = 0.5) -> "Grid":
        """Maps of several ``images`` (paths) × classes × ``methods`` side by side, for a
        notebook (what ``rsp serve`` shows in a browser): the returned :class:`Grid`
        displays itself as an HTML table (rows image × class, one column per method; the
        maps drawn over the photos with :func:`render`) and keeps the maps.
        ``classes``: one list of classes per image, or ``None`` for each image's ``top``
        predictions. Each method is one :meth:`explain` call over every (image, class)
        pair; ``cmap`` and ``alpha`` as :func:`render` takes them."""
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
        maps: Dict[Tuple[int, int, str], FloatArray] = {}
        for method in methods:
            e = self.explain(rows, method=method, targets=targets)
            for j, (i, c) in enumerate(pairs):
                maps[(i, c, method)] = e.heatmap[j]
        names = self.class_names
        return Grid(paths=paths, photos=photos, pairs=pairs, methods=list(methods), maps=maps,
                    class_names=names, cmap=cmap, alpha=alpha)

    def predict(self, x: Input, k: int = 5, batch_size: int = 8) -> List[List[Tuple[int, float]]]:
        """The top ``k`` ``(class, probability)`` pairs per image of ``x`` (as
        :meth:`explain` takes it), ``batch_size`` images per GPU pass: softmax of the
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


def _shard(shard: Union[None, str, Tuple[int, int]]) -> Optional[str]:
    if shard is None or isinstance(shard, str):
        return shard
    index, count = shard
    return f"{int(index)}/{int(count)}"


def _run_options(metric: str, weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
                 out: Optional[PathArg], methods: Optional[Sequence[str]],
                 **options: Any) -> Dict[str, Any]:
    """The dict the native drivers take: every keyword given (``None``: the default)."""
    files = [weights] if isinstance(weights, (str, PathLike)) else list(weights)
    names = [methods] if isinstance(methods, str) else methods
    given = {k: v for k, v in options.items() if v is not None}
    for key in ("root", "difficult"):
        if key in given:
            given[key] = fspath(given[key])
    if out is not None:
        given["out"] = fspath(out)
    if names is not None:
        given["methods"] = list(names)
    given["adapter"] = _adapter(given.get("adapter"))
    if given["adapter"] is None:
        del given["adapter"]
    return dict(metric=metric, weights=[fspath(w) for w in files], dataset=fspath(dataset),
                **given)


#: A faithfulness metric of :func:`eval_faithfulness`.
FaithfulnessMetric = Literal["deletion-insertion", "region-perturbation", "road"]
#: One shard of a run: ``(index, count)`` or ``"index/count"``.
ShardArg = Union[str, Tuple[int, int]]


def eval_pointing_game(weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
                       out: Optional[PathArg] = None,
                       methods: Optional[Sequence[EvalMethod]] = None,
                       root: Optional[PathArg] = None, split: Optional[str] = None,
                       size: Optional[int] = None, norm: Optional[str] = None,
                       batch: Optional[int] = None, limit: Optional[int] = None,
                       tolerance: Optional[float] = None, difficult: Optional[PathArg] = None,
                       shard: Optional[ShardArg] = None,
                       backend: Backend = "auto", precision: Precision = "f32",
                       autotune: Autotune = "off", exact_kernels: bool = False,
                       adapter: Optional[str] = None) -> Dict[str, Any]:
    """The Pointing Game as ``rsp eval pointing-game`` runs it, on the same driver:
    ``dataset`` is ``voc07``/``coco14`` (with ``root``, the dataset's folder; ``split``
    its image list, default ``test``) or a folder in VOC layout (such as ``rsp synth``
    writes); one column group per ``weights`` file; ``methods`` any of
    :meth:`Explainer.explain`'s and ``center`` (default: all). Resumable logs and the
    table (CSV, Markdown) go to ``out`` (default ``rsp-eval``), under the command line's
    names; a rerun resumes from the logs. ``size`` (default 224) and ``norm``
    (``torchvision`` or ``caffe``) preprocess the images, ``batch`` (default 16)
    (image, class) pairs go through the GPU at once, ``limit`` scores only the first
    images, ``tolerance`` is the hit radius in pixels (default 15), ``difficult`` a
    folder of the EBP difficult flags. ``shard`` ``(i, n)`` scores only the images whose
    index is i mod n into a log of its own and returns ``{"shard", "logs"}``;
    :func:`eval_merge` joins the shards. The GPU options are :class:`Explainer`'s
    (``backend``, ``adapter``, ``precision``, ``autotune``, ``exact_kernels``). Returns
    ``{"title", "columns", "rows": {method: [percent or None per column]}, "csv",
    "md"}``."""
    return dict(_rsp.eval_run(_run_options(
        "pointing-game", weights, dataset, out, methods, root=root, split=split, size=size,
        norm=norm, batch=batch, limit=limit, tolerance=tolerance, difficult=difficult,
        shard=_shard(shard), backend=backend, precision=precision, autotune=autotune,
        exact_kernels=exact_kernels, adapter=adapter)))


def eval_miou(weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
              out: Optional[PathArg] = None, methods: Optional[Sequence[Method]] = None,
              root: Optional[PathArg] = None, split: Optional[str] = None,
              size: Optional[int] = None, norm: Optional[str] = None,
              batch: Optional[int] = None, limit: Optional[int] = None,
              threshold: Optional[str] = None, shard: Optional[ShardArg] = None,
              backend: Backend = "auto", precision: Precision = "f32",
              autotune: Autotune = "off", exact_kernels: bool = False,
              adapter: Optional[str] = None) -> Dict[str, Any]:
    """mIoU of the binarised maps as ``rsp eval miou`` runs it (see
    :func:`eval_pointing_game` for ``weights``, ``dataset``, ``out``, ``methods``,
    ``root``, ``split``, ``size``, ``norm``, ``batch``, ``limit``, ``shard``, the GPU
    options ``backend``, ``adapter``, ``precision``, ``autotune``, ``exact_kernels``
    and the result);
    ``threshold``: ``"mean"`` (default: the mean of the map's positive values) or a
    fraction of the map's maximum such as ``"0.5"``."""
    return dict(_rsp.eval_run(_run_options(
        "miou", weights, dataset, out, methods, root=root, split=split, size=size,
        norm=norm, batch=batch, limit=limit,
        threshold=None if threshold is None else str(threshold), shard=_shard(shard),
        backend=backend, precision=precision, autotune=autotune,
        exact_kernels=exact_kernels, adapter=adapter)))


def eval_faithfulness(weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
                      out: Optional[PathArg] = None,
                      methods: Optional[Sequence[Method]] = None,
                      metric: FaithfulnessMetric = "deletion-insertion",
                      step: Optional[int] = None, baseline: Optional[str] = None,
                      patch: Optional[int] = None, regions: Optional[int] = None,
                      fill: Optional[str] = None, imputation_noise: Optional[float] = None,
                      root: Optional[PathArg] = None, split: Optional[str] = None,
                      size: Optional[int] = None, norm: Optional[str] = None,
                      batch: Optional[int] = None, limit: Optional[int] = None,
                      shard: Optional[ShardArg] = None, backend: Backend = "auto",
                      precision: Precision = "f32", autotune: Autotune = "off",
                      exact_kernels: bool = False,
                      adapter: Optional[str] = None) -> Dict[str, Any]:
    """A faithfulness metric as ``rsp eval faithfulness`` runs it (see
    :func:`eval_pointing_game` for ``weights``, ``dataset``, ``out``, ``methods``,
    ``root``, ``split``, ``size``, ``norm``, ``batch``, ``limit``, ``shard`` and the GPU
    options ``backend``, ``adapter``, ``precision``, ``autotune``, ``exact_kernels``).
    ``metric``: ``deletion-insertion`` (RISE: ``step`` pixels per step at 224x224,
    default 224, deleted towards the ``baseline`` ``mean`` or ``blur``),
    ``region-perturbation`` (AOPC: up to ``regions`` patches, default 100, of ``patch``
    pixels, default 8, replaced by ``fill`` ``noise`` or ``mean``) or ``road``
    (``imputation_noise``, default 0.01). Returns the table as
    :func:`eval_pointing_game` does (cells as the table shows them), plus ``"x"`` (the
    curves' points) and ``"curves"``: ``{model: {method: {summary: [mean curve]}}}``
    — the curves the command line plots."""
    return dict(_rsp.eval_run(_run_options(
        "faithfulness", weights, dataset, out, methods, faithfulness=metric, step=step,
        baseline=baseline, patch=patch, regions=regions, fill=fill,
        imputation_noise=imputation_noise, root=root, split=split, size=size, norm=norm,
        batch=batch, limit=limit, shard=_shard(shard), backend=backend,
        precision=precision, autotune=autotune, exact_kernels=exact_kernels,
        adapter=adapter)))


def eval_sensitivity(weights: PathArg, dataset: PathArg, out: Optional[PathArg] = None,
                     methods: Optional[Sequence[Method]] = None,
                     images: Optional[int] = None, seed: Optional[int] = None,
                     root: Optional[PathArg] = None, split: Optional[str] = None,
                     size: Optional[int] = None, norm: Optional[str] = None,
                     backend: Backend = "auto", precision: Precision = "f32",
                     autotune: Autotune = "off", exact_kernels: bool = False,
                     adapter: Optional[str] = None) -> Dict[str, Any]:
    """Model sensitivity (cascading randomisation, Adebayo et al. 2018) as ``rsp eval
    sensitivity`` runs it: the first ``images`` images (default 16) explained for the
    model's top-1 class, the layers re-initialised from the logits down (``seed``,
    default 0), and after each step every method's maps compared with the original ones.
    One ``weights`` file; ``dataset``, ``root``, ``split``, ``size``, ``norm``,
    ``methods`` and the GPU options (``backend``, ``adapter``, ``precision``,
    ``autotune``, ``exact_kernels``) as in :func:`eval_pointing_game`. The tables go to
    ``out`` (``sensitivity.MODEL.csv``/``.md``). Returns ``{"model", "steps", "curves":
    {method: {"spearman", "spearman_abs", "ssim"}}, "csv", "md"}``."""
    return dict(_rsp.eval_sensitivity(_run_options(
        "sensitivity", weights, dataset, out, methods, images=images, seed=seed,
        root=root, split=split, size=size, norm=norm, backend=backend,
        precision=precision, autotune=autotune, exact_kernels=exact_kernels,
        adapter=adapter)))


def eval_merge(out: PathArg) -> List[Dict[str, Any]]:
    """Merges the shard logs in ``out`` (``rsp eval merge``): per sharded run, the log
    and table one unsharded run writes, byte for byte, returned as
    :func:`eval_pointing_game` returns a table. Refuses shards of different runs and
    records that disagree, and names the images still missing, writing nothing then."""
    return [dict(t) for t in _rsp.eval_merge(fspath(out))]


@dataclass
class Grid:
    """Maps of images × classes × methods (:meth:`Explainer.grid`); shown as an HTML table
    in Jupyter (``_repr_html_``), or written with :meth:`save`."""

    paths: List[str]
    photos: List[npt.NDArray[np.uint8]]
    pairs: List[Tuple[int, int]]
    """(image index, class) per row."""
    methods: List[str]
    maps: Dict[Tuple[int, int, str], FloatArray]
    """``[H, W]`` map per (image index, class, method)."""
    class_names: Optional[List[str]] = None
    cmap: ColorMap = "bwr"
    alpha: float = 0.5

    def overlay(self, image: int, cls: int, method: str) -> npt.NDArray[np.uint8]:
        """One cell: the map over its photo (uint8 ``[H, W, 3]``), as :func:`render`."""
        return render(self.maps[(image, cls, method)], self.photos[image], self.cmap, self.alpha)

    def _repr_html_(self) -> str:
        def cell(rgb: npt.NDArray[np.uint8]) -> str:
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

    def save(self, path: PathArg) -> None:
        """Writes the table as a self-contained HTML page."""
        with open(fspath(path), "w", encoding="utf-8") as f:
            f.write(f"<!doctype html><meta charset='utf-8'>{self._repr_html_()}")
