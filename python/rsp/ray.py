"""The benchmarks and explanations of a dataset spread over GPUs and machines with Ray
Data (``pip install 'rsp-xai[ray]'``): one actor per GPU holds the model, blocks of
images flow to the actors, and the driver — this process — keeps the one resumable log.

    import ray, rsp.ray
    ray.init()                                    # or ray.init("auto") on a cluster
    table = rsp.ray.eval_pointing_game("vgg16.safetensors", "voc07", root="VOC2007",
                                       out="runs", workers=4)

Each ``eval_*`` takes the arguments of the plain function (:func:`rsp.eval_pointing_game`
and its siblings) plus ``workers`` (actors; default one per GPU of the cluster, or one),
``cpus_per_worker`` (default 0.5), ``block`` (images per block, default 32) and
``adapters`` (Ray GPU id → ``adapter=`` choice; default from NVML's PCI bus ids). The
driver appends each block's records to the log in the split's order, keeping the first
of any (image, method) it already has, so a block Ray retries after a worker died cannot
count twice, and a rerun after the driver died resumes from the log: the records and the
table are the plain function's, byte for byte. Retries and actor restarts are Ray's.

Vulkan does not read ``CUDA_VISIBLE_DEVICES``, so each worker maps the GPU Ray gave it
to its wgpu adapter by PCI bus id (NVML, from ``nvidia-ml-py``); without a bus id it
takes the default adapter and warns, since several workers may then share one GPU.
"""

import hashlib
import os
import signal
import warnings
from os import fspath
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

try:
    import ray
    import ray.data
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("rsp.ray needs Ray Data: pip install 'rsp-xai[ray]'") from error

from . import (Autotune, Backend, EvalMethod, Explainer, FaithfulnessMetric, Method,
               PathArg, Precision, _rsp, _run_options, _write_atomic, load_image)

__all__ = ["adapter_for", "eval_faithfulness", "eval_miou", "eval_pointing_game",
           "eval_sensitivity", "explain_dataset", "nvml_bus_ids", "KILL_ONCE_ENV",
           "DRIVER_EXIT_ENV"]

#: A test hook: the path of a marker file, read by the workers. While the file exists,
#: the first worker call to remove it kills its own process (SIGKILL) before scoring, as
#: a crashed GPU worker dies.
KILL_ONCE_ENV = "RSP_RAY_KILL_ONCE"
#: A test hook: the driver exits (as if killed) once it has appended this many records.
DRIVER_EXIT_ENV = "RSP_RAY_DRIVER_EXIT_AFTER"


def nvml_bus_ids() -> Dict[int, str]:
    """NVML's PCI bus id of every GPU by NVML index (``{}`` without NVML or a driver)."""
    try:
        import pynvml  # type: ignore[import-not-found, import-untyped, unused-ignore]
        pynvml.nvmlInit()
    except Exception:
        return {}
    try:
        out = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            bus = pynvml.nvmlDeviceGetPciInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).busId
            out[i] = bus.decode() if isinstance(bus, bytes) else str(bus)
        return out
    finally:
        pynvml.nvmlShutdown()


def adapter_for(gpu_ids: Sequence[Union[int, str]],
                bus_ids: Mapping[int, str]) -> Optional[str]:
    """The ``adapter=`` choice for a worker Ray gave ``gpu_ids`` (physical GPU indices,
    NVML's numbering): ``pci:BUS`` of the first, or ``None`` where no bus id is known."""
    if not gpu_ids:
        return None
    bus = bus_ids.get(int(gpu_ids[0]))
    return None if bus is None else f"pci:{bus}"


def _worker_adapter(options: Dict[str, Any], adapters: Optional[Mapping[int, str]]
                    ) -> Tuple[List[int], Optional[str]]:
    """This worker's Ray GPU ids and the adapter it opens."""
    gpu_ids = [int(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    if options.get("adapter"):
        return gpu_ids, options["adapter"]
    if not gpu_ids:
        return gpu_ids, None
    if adapters is not None:
        choice = adapters.get(gpu_ids[0])
    else:
        choice = adapter_for(gpu_ids, nvml_bus_ids())
    if choice is None:
        warnings.warn(f"rsp.ray: no PCI bus id for Ray GPU {gpu_ids[0]} (is nvidia-ml-py "
                      "installed, with a driver?); this worker takes the default adapter, "
                      "which other workers may share", RuntimeWarning, stacklevel=2)
    return gpu_ids, choice


def _kill_once() -> None:
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        os.remove(marker)
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class _Worker:
    """The actor: the run's model on this worker's GPU, scoring blocks of images."""

    def __init__(self, options: Dict[str, Any], model: int,
                 adapters: Optional[Mapping[int, str]]) -> None:
        self.gpu_ids, choice = _worker_adapter(options, adapters)
        opened = dict(options)
        if choice is not None:
            opened["adapter"] = choice
        self.worker = _rsp.EvalWorker(opened, model)
        self.who = f"{os.getpid()}|{','.join(map(str, self.gpu_ids))}|{choice or ''}|" \
                   f"{self.worker.adapter}"

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        _kill_once()
        items = [(int(i), [m for m in str(d).split(",") if m])
                 for i, d in zip(batch["index"], batch["done"])]
        lines = self.worker.score(items)
        return {"line": np.array(lines, dtype=object),
                "worker": np.array([self.who] * len(lines), dtype=object)}


def _cluster_gpus() -> int:
    resources: Dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return int(resources.get("GPU", 0))


def _map(rows: List[Dict[str, Any]], worker: type, constructor: Dict[str, Any],
         workers: Optional[int], cpus_per_worker: float, block: int
         ) -> Iterator[Dict[str, np.ndarray]]:
    """Ray Data over ``rows``: an actor pool of ``worker``, blocks in order. Ray Data
    restarts a dead actor and retries its block by default (``max_restarts=-1``,
    ``max_task_retries=-1``)."""
    if not ray.is_initialized():
        ray.init()
    gpus = _cluster_gpus()
    size = workers if workers is not None else max(gpus, 1)
    if size < 1:
        raise ValueError(f"workers must be at least 1, got {size}")
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    context = ray.data.DataContext.get_current()
    keep = context.execution_options.preserve_order
    context.execution_options.preserve_order = True
    try:
        blocks = max(1, (len(rows) + block - 1) // block)
        data = ray.data.from_items(rows, override_num_blocks=blocks)
        mapped = data.map_batches(
            worker, fn_constructor_kwargs=constructor, batch_size=block,
            compute=ray.data.ActorPoolStrategy(size=size), num_gpus=1 if gpus else 0,
            num_cpus=cpus_per_worker, batch_format="numpy")
        yield from mapped.iter_batches(batch_size=None, batch_format="numpy")
    finally:
        context.execution_options.preserve_order = keep


def _logged(options: Dict[str, Any], workers: Optional[int], cpus_per_worker: float,
            block: int, adapters: Optional[Mapping[int, str]]) -> Dict[str, Any]:
    """A logged benchmark over Ray: the driver's log, the workers' records."""
    if options.get("shard") is not None:
        raise ValueError("shard: a Ray run spreads the whole split itself; run the plain "
                         "function for one shard")
    run = _rsp.LoggedRun(options)
    exit_after = int(os.environ.get(DRIVER_EXIT_ENV, "0") or 0)
    appended = 0
    seen: Dict[str, Dict[str, Any]] = {}
    for model in range(len(run.models)):
        pending = run.pending(model)
        if not pending:
            continue
        rows = [{"index": i, "done": ",".join(done)} for i, done in pending]
        for batch in _map(rows, _Worker, dict(options=options, model=model, adapters=adapters),
                          workers, cpus_per_worker, block):
            for who in set(batch["worker"]):
                pid, gpus, choice, device = str(who).split("|", 3)
                seen[str(who)] = dict(pid=int(pid), gpu_ids=[int(g) for g in gpus.split(",") if g],
                                      adapter=choice or None, device=device)
            appended += run.append(model, [str(line) for line in batch["line"]])
            if exit_after and appended >= exit_after:
                os._exit(75)
    result = dict(run.finish())
    result["workers"] = list(seen.values())
    return result


def eval_pointing_game(weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
                       out: Optional[PathArg] = None,
                       methods: Optional[Sequence[EvalMethod]] = None,
                       root: Optional[PathArg] = None, split: Optional[str] = None,
                       size: Optional[int] = None, norm: Optional[str] = None,
                       batch: Optional[int] = None, limit: Optional[int] = None,
                       tolerance: Optional[float] = None, difficult: Optional[PathArg] = None,
                       backend: Backend = "auto", precision: Precision = "f32",
                       autotune: Autotune = "off", exact_kernels: bool = False,
                       adapter: Optional[str] = None, workers: Optional[int] = None,
                       cpus_per_worker: float = 0.5, block: int = 32,
                       adapters: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """:func:`rsp.eval_pointing_game` over Ray (``weights``, ``dataset``, ``out``,
    ``methods``, ``root``, ``split``, ``size``, ``norm``, ``batch``, ``limit``,
    ``tolerance``, ``difficult``, ``backend``, ``precision``, ``autotune``,
    ``exact_kernels`` and ``adapter`` as there; ``adapter`` set sends every worker to
    that adapter) with ``workers`` actors of ``cpus_per_worker`` CPUs and one GPU each
    (where the cluster has GPUs), ``block`` images per block, and ``adapters`` mapping a
    Ray GPU id to an adapter choice (default: NVML's bus ids). Returns the plain
    function's table plus ``"workers"``: each actor's pid, Ray GPU ids, adapter choice
    and device."""
    return _logged(_run_options(
        "pointing-game", weights, dataset, out, methods, root=root, split=split, size=size,
        norm=norm, batch=batch, limit=limit, tolerance=tolerance, difficult=difficult,
        backend=backend, precision=precision, autotune=autotune,
        exact_kernels=exact_kernels, adapter=adapter), workers, cpus_per_worker, block,
        adapters)


def eval_miou(weights: Union[PathArg, Sequence[PathArg]], dataset: PathArg,
              out: Optional[PathArg] = None, methods: Optional[Sequence[Method]] = None,
              root: Optional[PathArg] = None, split: Optional[str] = None,
              size: Optional[int] = None, norm: Optional[str] = None,
              batch: Optional[int] = None, limit: Optional[int] = None,
              threshold: Optional[str] = None, backend: Backend = "auto",
              precision: Precision = "f32", autotune: Autotune = "off",
              exact_kernels: bool = False, adapter: Optional[str] = None,
              workers: Optional[int] = None, cpus_per_worker: float = 0.5, block: int = 32,
              adapters: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """:func:`rsp.eval_miou` over Ray (``weights``, ``dataset``, ``out``, ``methods``,
    ``root``, ``split``, ``size``, ``norm``, ``batch``, ``limit``, ``threshold``,
    ``backend``, ``precision``, ``autotune``, ``exact_kernels``, ``adapter`` as there;
    ``workers``, ``cpus_per_worker``, ``block``, ``adapters`` and the result as in
    :func:`eval_pointing_game`)."""
    return _logged(_run_options(
        "miou", weights, dataset, out, methods, root=root, split=split, size=size, norm=norm,
        batch=batch, limit=limit, threshold=None if threshold is None else str(threshold),
        backend=backend, precision=precision, autotune=autotune,
        exact_kernels=exact_kernels, adapter=adapter), workers, cpus_per_worker, block,
        adapters)


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
                      backend: Backend = "auto", precision: Precision = "f32",
                      autotune: Autotune = "off", exact_kernels: bool = False,
                      adapter: Optional[str] = None, workers: Optional[int] = None,
                      cpus_per_worker: float = 0.5, block: int = 32,
                      adapters: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """:func:`rsp.eval_faithfulness` over Ray (``weights``, ``dataset``, ``out``,
    ``methods``, ``metric``, ``step``, ``baseline``, ``patch``, ``regions``, ``fill``,
    ``imputation_noise``, ``root``, ``split``, ``size``, ``norm``, ``batch``, ``limit``,
    ``backend``, ``precision``, ``autotune``, ``exact_kernels``, ``adapter`` as there;
    ``workers``, ``cpus_per_worker``, ``block``, ``adapters`` and the result as in
    :func:`eval_pointing_game`)."""
    return _logged(_run_options(
        "faithfulness", weights, dataset, out, methods, faithfulness=metric, step=step,
        baseline=baseline, patch=patch, regions=regions, fill=fill,
        imputation_noise=imputation_noise, root=root, split=split, size=size, norm=norm,
        batch=batch, limit=limit, backend=backend, precision=precision, autotune=autotune,
        exact_kernels=exact_kernels, adapter=adapter), workers, cpus_per_worker, block,
        adapters)


class _SensitivityWorker:
    """The actor of :func:`eval_sensitivity`: the cascade for a block of methods."""

    def __init__(self, options: Dict[str, Any], adapters: Optional[Mapping[int, str]]) -> None:
        self.options = dict(options)
        self.gpu_ids, choice = _worker_adapter(options, adapters)
        if choice is not None:
            self.options["adapter"] = choice

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        _kill_once()
        methods = [str(m) for m in batch["method"]]
        result = _rsp.eval_sensitivity(dict(self.options, methods=methods), write=False)
        rows: Dict[str, List[Any]] = {"method": [], "model": [], "steps": [], "spearman": [],
                                      "spearman_abs": [], "ssim": []}
        for m in methods:
            c = result["curves"][m]
            rows["method"].append(m)
            rows["model"].append(result["model"])
            rows["steps"].append("\t".join(result["steps"]))
            for key in ("spearman", "spearman_abs", "ssim"):
                rows[key].append(np.array(c[key], dtype=np.float64))
        return {k: np.array(v, dtype=object) for k, v in rows.items()}


def eval_sensitivity(weights: PathArg, dataset: PathArg, out: Optional[PathArg] = None,
                     methods: Optional[Sequence[Method]] = None,
                     images: Optional[int] = None, seed: Optional[int] = None,
                     root: Optional[PathArg] = None, split: Optional[str] = None,
                     size: Optional[int] = None, norm: Optional[str] = None,
                     backend: Backend = "auto", precision: Precision = "f32",
                     autotune: Autotune = "off", exact_kernels: bool = False,
                     adapter: Optional[str] = None, workers: Optional[int] = None,
                     cpus_per_worker: float = 0.5,
                     adapters: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """:func:`rsp.eval_sensitivity` over Ray, one method per block (``weights``,
    ``dataset``, ``out``, ``methods``, ``images``, ``seed``, ``root``, ``split``,
    ``size``, ``norm``, ``backend``, ``precision``, ``autotune``, ``exact_kernels``,
    ``adapter`` as there; ``workers``, ``cpus_per_worker`` and ``adapters`` as in
    :func:`eval_pointing_game`). Each method's cascade is independent of the others',
    so the tables are the plain function's."""
    options = _run_options("sensitivity", weights, dataset, out, methods, images=images,
                           seed=seed, root=root, split=split, size=size, norm=norm,
                           backend=backend, precision=precision, autotune=autotune,
                           exact_kernels=exact_kernels, adapter=adapter)
    names = list(options.get("methods") or _rsp.names()["methods"])
    options["methods"] = names
    curves: Dict[str, Dict[str, List[float]]] = {}
    model, steps = "", []
    for batch in _map([{"method": m} for m in names], _SensitivityWorker,
                      dict(options=options, adapters=adapters), workers, cpus_per_worker, 1):
        for i, m in enumerate(batch["method"]):
            model, steps = str(batch["model"][i]), str(batch["steps"][i]).split("\t")
            curves[str(m)] = {k: [float(v) for v in batch[k][i]]
                              for k in ("spearman", "spearman_abs", "ssim")}
    result: Dict[str, Any] = dict(model=model, steps=steps,
                                  curves={m: curves[m] for m in names})
    result["csv"], result["md"] = _rsp.write_sensitivity(options, result)
    return result


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _ExplainWorker:
    """The actor of :func:`explain_dataset`: an :class:`rsp.Explainer` on this worker's
    GPU writing one relevance file per (image, class, method)."""

    def __init__(self, weights: str, weights_digest: str, methods: List[str], size: int,
                 out: str, options: Dict[str, Any],
                 adapters: Optional[Mapping[int, str]]) -> None:
        self.gpu_ids, choice = _worker_adapter(options, adapters)
        gpu = {k: v for k, v in options.items() if k != "adapter"}
        self.explainer = Explainer(weights=weights, size=size, adapter=choice, **gpu)
        self.key = f"{weights_digest}|{size}"
        self.methods, self.out, self.size = methods, out, size

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        _kill_once()
        rows: Dict[str, List[Any]] = {"image": [], "class": [], "method": [], "file": []}
        for path, targets in zip(batch["image"], batch["targets"]):
            path = str(path)
            classes = [int(c) for c in str(targets).split(",") if c]
            if not classes:
                classes = [self.explainer.predict(path, k=1)[0][0][0]]
            image_digest = _digest(path)
            stem = os.path.splitext(os.path.basename(path))[0]
            for method in self.methods:
                names = []
                for c in classes:
                    key = hashlib.sha256(
                        f"{self.key}|{image_digest}|{method}|{c}".encode()).hexdigest()[:16]
                    names.append(f"{stem}.{method}.{c}.{key}.safetensors")
                todo = [i for i, n in enumerate(names)
                        if not os.path.exists(os.path.join(self.out, n))]
                if todo:
                    os.makedirs(self.out, exist_ok=True)
                    x = np.stack([load_image(path, self.size)] * len(todo))
                    e = self.explainer.explain(x, method=method,  # type: ignore[arg-type]
                                               targets=[classes[i] for i in todo])
                    for row, i in enumerate(todo):
                        e.save(os.path.join(self.out, names[i]), images=[row])
                for c, n in zip(classes, names):
                    rows["image"].append(path)
                    rows["class"].append(c)
                    rows["method"].append(method)
                    rows["file"].append(n)
        return {k: np.array(v, dtype=object) for k, v in rows.items()}


def explain_dataset(inputs: Sequence[PathArg], weights: PathArg,
                    methods: Sequence[Method] = ("rsp",),
                    targets: Union[None, int, Sequence[Union[int, Sequence[int]]]] = None,
                    out: PathArg = "rsp-maps", size: int = 224, backend: Backend = "auto", precision: Precision = "f32",
                    autotune: Autotune = "off", exact_kernels: bool = False,
                    adapter: Optional[str] = None, workers: Optional[int] = None,
                    cpus_per_worker: float = 0.5, block: int = 8,
                    adapters: Optional[Mapping[int, str]] = None) -> List[Dict[str, Any]]:
    """Explains every image of ``inputs`` (paths) with ``weights`` for every method of
    ``methods`` over Ray, writing one relevance file (``rsp run --save-relevance``'s
    format: relevance, heatmap, init, logits, target) per (image, class, method) into
    ``out`` (default ``rsp-maps``). ``targets``: ``None`` (each image's top class), one class for all, or per
    image a class or a list of classes. Files are named by what they hold (image stem,
    method, class and a hash of the image's bytes, the weights' bytes and ``size``) and
    written atomically, so a retried block rewrites the same files harmlessly and a
    rerun skips what exists. ``size``, the GPU options (``backend``, ``precision``,
    ``autotune``, ``exact_kernels``, ``adapter``) are :class:`rsp.Explainer`'s;
    ``workers``, ``cpus_per_worker``, ``block`` (images per block) and ``adapters`` as
    in :func:`eval_pointing_game`. Writes ``out/index.csv`` (image, class, method,
    file) and returns its rows."""
    folder = fspath(out)
    paths = [fspath(p) for p in inputs]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"inputs: no image {p}")
    per_image: List[str]
    if targets is None:
        per_image = [""] * len(paths)
    elif isinstance(targets, (int, np.integer)):
        per_image = [str(targets)] * len(paths)
    else:
        if len(targets) != len(paths):
            raise ValueError(f"targets: {len(targets)} entries for {len(paths)} inputs")
        per_image = [str(int(t)) if isinstance(t, (int, np.integer))
                     else ",".join(str(int(c)) for c in t) for t in targets]
    options: Dict[str, Any] = dict(backend=backend, precision=precision, autotune=autotune,
                                   exact_kernels=exact_kernels)
    chosen = adapter if adapter is not None else os.environ.get("RSP_ADAPTER") or None
    if chosen is not None:
        options["adapter"] = chosen
    rows = [{"image": p, "targets": t} for p, t in zip(paths, per_image)]
    if not os.path.isfile(fspath(weights)):
        raise FileNotFoundError(f"weights: no file {fspath(weights)}")
    constructor = dict(weights=fspath(weights), weights_digest=_digest(fspath(weights)),
                       methods=list(methods), size=size, out=folder, options=options,
                       adapters=adapters)
    # The folder is made by the first worker that writes (a model that does not load
    # leaves none behind), and here for the index.
    index: List[Dict[str, Any]] = []
    for batch in _map(rows, _ExplainWorker, constructor, workers, cpus_per_worker, block):
        for i in range(len(batch["file"])):
            index.append({"image": str(batch["image"][i]), "class": int(batch["class"][i]),
                          "method": str(batch["method"][i]), "file": str(batch["file"][i])})
    os.makedirs(folder, exist_ok=True)
    text = "image,class,method,file\n" + "".join(
        f"{r['image']},{r['class']},{r['method']},{r['file']}\n" for r in index)
    _write_atomic(os.path.join(folder, "index.csv"), text.encode())
    return index

