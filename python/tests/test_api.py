"""What numpy and torch users hand the package: every array-like gives the float32
array's map (or one ValueError saying what to pass), PIL images and pixels load like
their file, `with` releases the GPU device, every parameter is documented, the Literal
types name what the engine accepts, and errors speak Python's keywords.

torch and Pillow are optional here (the package needs neither): their tests skip
without them, unless RSP_TEST_REQUIRE names them (CI installs both into the wheel's
venv and sets it), and then a missing one fails."""

import importlib
import inspect
import os
import pydoc
import typing
from pathlib import Path

import numpy as np
import pytest

import rsp
from rsp import _rsp

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
REQUIRED = {m.strip() for m in os.environ.get("RSP_TEST_REQUIRE", "").split(",") if m.strip()}


def optional(module):
    """`module`, or a skip with the reason; an ImportError (a failure) where
    RSP_TEST_REQUIRE names its package."""
    if module.split(".")[0] in REQUIRED:
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed (optional)")


@pytest.fixture(scope="module")
def vgg():
    with rsp.Explainer(weights=GOLDEN / "vgg_tiny.safetensors") as ex:
        yield ex


@pytest.fixture(scope="module")
def x32():
    return np.random.default_rng(7).standard_normal((2, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(vgg, x32):
    return vgg.explain(x32, targets=[3, 5])


def same_map(vgg, reference, x):
    e = vgg.explain(x, targets=[3, 5])
    np.testing.assert_array_equal(e.relevance, reference.relevance)
    np.testing.assert_array_equal(e.logits, reference.logits)


class ArrayOnly:
    """Has only `__array__` (as array-likes of other libraries do)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


class DLPackOnly:
    """Has only the DLPack protocol (as tensors of other frameworks do)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_array_likes_give_the_float32_map(vgg, x32, reference):
    same_map(vgg, reference, x32.astype(np.float64))           # float64: converted
    same_map(vgg, reference, ArrayOnly(x32))
    same_map(vgg, reference, DLPackOnly(x32))
    same_map(vgg, reference, x32.tolist())                      # nested lists
    fortran = np.asfortranarray(x32)
    assert not fortran.flags.c_contiguous
    same_map(vgg, reference, fortran)
    strided = np.zeros((2, 3, 32, 64), np.float32)
    strided[..., ::2] = x32
    same_map(vgg, reference, strided[..., ::2])                 # a view with strides
    one = vgg.explain(x32[0], targets=3)                        # one image [3, H, W]
    np.testing.assert_array_equal(one.relevance[0], reference.relevance[0])


def test_other_dtypes_raise_one_clear_error(vgg, x32):
    with pytest.raises(ValueError, match="floating-point dtype, got int64"):
        vgg.explain(x32.astype(np.int64))
    with pytest.raises(ValueError, match="rsp.load_image"):
        vgg.explain(np.zeros((1, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="expected an array"):
        vgg.explain(object())


def test_torch_cpu_tensors_give_the_float32_map(vgg, x32, reference):
    torch = optional("torch")
    same_map(vgg, reference, torch.from_numpy(x32))
    same_map(vgg, reference, torch.from_numpy(x32).double())
    same_map(vgg, reference, torch.from_numpy(x32).requires_grad_())   # detached, only read
    same_map(vgg, reference, torch.from_numpy(x32).permute(0, 1, 3, 2).transpose(2, 3))
    targets = torch.tensor([3, 5])
    e = vgg.explain(torch.from_numpy(x32), targets=targets)
    np.testing.assert_array_equal(e.relevance, reference.relevance)
    with pytest.raises(ValueError, match="floating-point dtype"):
        vgg.explain(torch.zeros((1, 3, 32, 32), dtype=torch.int32))
    # A state_dict of torch tensors, some tracking gradients.
    sd = {k: torch.from_numpy(v).requires_grad_(v.dtype == np.float32)
          for k, v in rsp_state_dict().items()}
    with rsp.Explainer(state_dict=sd) as ex:
        same_map(ex, reference, x32)


def rsp_state_dict():
    """The golden VGG's tensors (float32 only) as a dict of numpy arrays."""
    import json
    import struct
    raw = (GOLDEN / "vgg_tiny.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], "<f4").reshape(info["shape"]).copy()
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A PNG written from known pixels, and the pixels."""
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("photo") / "pixels.png"
    path.write_bytes(_rsp.encode_png(pixels))
    return path, pixels


def test_pixels_and_pil_images_load_like_their_file(vgg, photo):
    path, pixels = photo
    from_file = rsp.load_image(path, size=32)
    np.testing.assert_array_equal(rsp.load_image(pixels, size=32), from_file)
    np.testing.assert_array_equal(rsp.load_image(np.asfortranarray(pixels), size=32), from_file)
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        rsp.load_image(pixels.astype(np.float32), size=32)
    Image = optional("PIL.Image")
    with Image.open(path) as im:
        np.testing.assert_array_equal(rsp.load_image(im, size=32), from_file)
        gray = im.convert("L")  # any mode is converted to RGB first
        assert rsp.load_image(gray, size=32).shape == (3, 32, 32)
        e = vgg.explain([im, path], targets=1)  # PIL images and paths, like paths
    np.testing.assert_array_equal(e.relevance[0], e.relevance[1])


def test_with_releases_the_gpu_device(x32):
    before = _rsp.open_engines()
    with rsp.Explainer(weights=GOLDEN / "vgg_tiny.safetensors") as ex:
        assert _rsp.open_engines() == before + 1 and not ex.closed
        ex.explain(x32)
    assert _rsp.open_engines() == before, "the with block kept the device"
    assert ex.closed and "closed" in repr(ex)
    with pytest.raises(ValueError, match="closed"):
        ex.explain(x32)
    ex.close()  # twice is harmless
    # An exception inside the block releases it too.
    with pytest.raises(ZeroDivisionError):
        with rsp.Explainer(weights=GOLDEN / "vgg_tiny.safetensors"):
            1 / 0
    assert _rsp.open_engines() == before
    # Many in a row: each is released before the next (no device piles up).
    for _ in range(5):
        with rsp.Explainer(weights=GOLDEN / "vgg_tiny.safetensors") as ex:
            assert _rsp.open_engines() == before + 1
    assert _rsp.open_engines() == before


def documented(obj):
    doc = inspect.getdoc(obj) or ""
    params = [p for p in inspect.signature(obj).parameters if p not in ("self", "args", "kwargs")]
    return [p for p in params if f"``{p}``" not in doc]


def test_help_shows_every_parameter():
    for obj in (rsp.Explainer, rsp.Explainer.explain, rsp.Explainer.predict, rsp.Explainer.grid,
                rsp.eval_pointing_game, rsp.eval_miou, rsp.eval_faithfulness,
                rsp.eval_sensitivity, rsp.eval_merge, rsp.load_image, rsp.render):
        assert documented(obj) == [], f"{obj.__qualname__}: undocumented parameters"
    text = pydoc.render_doc(rsp.Explainer, renderer=pydoc.plaintext)
    for p in inspect.signature(rsp.Explainer).parameters:
        assert p in text


def test_literal_types_name_what_the_engine_accepts():
    names = _rsp.names()
    assert list(typing.get_args(rsp.Method)) == names["methods"]
    assert list(typing.get_args(rsp.EvalMethod)) == names["methods"] + ["center"]
    assert list(typing.get_args(rsp.InitKind)) == names["inits"]
    assert list(typing.get_args(rsp.ColorMap)) == names["colour_maps"]
    for backend in typing.get_args(rsp.Backend):
        rsp.adapters(backend)  # each is a backend name the engine parses


def test_gpu_options_are_checked_by_name():
    w = GOLDEN / "vgg_tiny.safetensors"
    with pytest.raises(ValueError, match="^autotune: unknown autotune mode 'sometimes'"):
        rsp.Explainer(weights=w, autotune="sometimes")
    with pytest.raises(ValueError, match="^backend: unknown backend 'cuda'"):
        rsp.Explainer(weights=w, backend="cuda")
    with rsp.Explainer(weights=w, exact_kernels=True) as ex:
        assert ex.num_classes == 10


def test_the_installed_copy_is_what_runs():
    """In CI the wheel is installed into a fresh venv and the tests run from outside
    the checkout (RSP_EXPECT_INSTALLED=1), on lavapipe (RSP_EXPECT_ADAPTER)."""
    if os.environ.get("RSP_EXPECT_INSTALLED") != "1":
        pytest.skip("RSP_EXPECT_INSTALLED is not set (a source checkout may be imported)")
    where = Path(rsp.__file__).resolve()
    assert ROOT not in where.parents, f"imported {where}, inside the checkout"
    assert "site-packages" in where.parts
    assert (where.parent / "py.typed").exists() and (where.parent / "_rsp.pyi").exists()
    expected = os.environ.get("RSP_EXPECT_ADAPTER")
    if expected:
        with rsp.Explainer(weights=GOLDEN / "vgg_tiny.safetensors") as ex:
            assert expected in ex.adapter, ex.adapter
            e = ex.explain(rsp.load_image(ROOT / "docs" / "synth" / "ring_star.jpg", 32)[None])
            assert np.isfinite(e.heatmap).all() and np.abs(e.heatmap).max() > 0


def test_the_adapter_is_chosen_by_index_name_or_environment(monkeypatch):
    monkeypatch.delenv("RSP_ADAPTER", raising=False)
    found = rsp.adapters("vulkan")
    assert found and [a["index"] for a in found] == list(range(len(found)))
    assert all(isinstance(a["pci_bus_id"], str) for a in found)
    w = GOLDEN / "vgg_tiny.safetensors"
    for a in found:
        with rsp.Explainer(weights=w, backend="vulkan", adapter=f"index:{a['index']}") as ex:
            assert ex.adapter == a["name"]
        with rsp.Explainer(weights=w, backend="vulkan", adapter=f"name:{a['name'][:6]}") as ex:
            assert ex.adapter.startswith(a["name"][:6])
    with pytest.raises(ValueError, match=r"^adapter pci:00ff:ff:1f\.7 matches none of .* index:0 '"):
        rsp.Explainer(weights=w, backend="vulkan", adapter="pci:00ff:ff:1f.7")
    with pytest.raises(ValueError, match=r"^adapter 'gpu1': expected index:N, pci:BUS or name:"):
        rsp.Explainer(weights=w, adapter="gpu1")
    monkeypatch.setenv("RSP_ADAPTER", "name:no such gpu")
    with pytest.raises(ValueError, match="name:no such gpu matches none"):
        rsp.Explainer(weights=w)
