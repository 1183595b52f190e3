"""`rsp.ray` on a local Ray with two fake GPUs (`ray.init(num_gpus=2)`), started once for
the module with fractional CPUs per actor (two actors at one CPU each deadlock a 2-core
Ray): the Ray benchmarks give the plain functions' records and tables byte for byte; a
worker killed mid-run and a driver killed mid-run lose nothing and count nothing twice;
each Ray GPU id maps to its own adapter; `explain_dataset`'s files hold
`Explainer.explain`'s maps. Skipped without Ray unless RSP_TEST_REQUIRE names `ray`."""

import csv
import importlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rsp

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "rsp"
WEIGHTS = ROOT / "weights" / "synth_vgg.safetensors"
REQUIRED = {m.strip() for m in os.environ.get("RSP_TEST_REQUIRE", "").split(",") if m.strip()}
ray = (importlib.import_module("ray") if "ray" in REQUIRED
       else pytest.importorskip("ray", reason="ray is not installed (optional: rsp-xai[ray])"))
rsp_ray = importlib.import_module("rsp.ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # The workers inherit the kill hook's marker path; the marker exists only while a
    # test arms it.
    os.environ[rsp_ray.KILL_ONCE_ENV] = str(tmp_path_factory.mktemp("hook") / "kill-once")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    """A 9-image synthetic test split (32 px) written by `rsp synth`."""
    if not CLI.exists():
        pytest.skip(f"needs the command line at {CLI} (cargo build --release)")
    data = tmp_path_factory.mktemp("ray") / "synth"
    subprocess.run([str(CLI), "synth", "--out", str(data), "--train", "0", "--val", "0",
                    "--test", "9", "--size", "32", "--seed", "4"], check=True,
                   capture_output=True)
    return data


COMMON = dict(methods=["rsp", "gradcam", "center"], size=0, batch=4)
LOG = "pointing-game.synth.synth_vgg.jsonl"
TABLES = ["pointing-game.synth.csv", "pointing-game.synth.md"]


@pytest.fixture(scope="module")
def plain(synth_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    table = rsp.eval_pointing_game(WEIGHTS, synth_set, out=out, **COMMON)
    return out, table


def same_files(a, b, names):
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_adapter_for_maps_each_gpu_to_its_bus_with_a_fake_nvml_table():
    nvml = {0: "00000000:3B:00.0", 1: "00000000:5E:00.0"}
    first, second = rsp_ray.adapter_for(["0"], nvml), rsp_ray.adapter_for([1], nvml)
    assert first == "pci:00000000:3B:00.0" and second == "pci:00000000:5E:00.0"
    assert rsp_ray.adapter_for([], nvml) is None and rsp_ray.adapter_for([2], nvml) is None
    # The choice is one the engine parses, and it names no adapter here.
    with pytest.raises(ValueError, match=r"^adapter pci:0000:3b:00\.0 matches none"):
        rsp.Explainer(weights=WEIGHTS, adapter=first)


def test_ray_eval_is_the_plain_functions_byte_for_byte(cluster, synth_set, plain, tmp_path):
    plain_out, plain_table = plain
    result = rsp_ray.eval_pointing_game(WEIGHTS, synth_set, out=tmp_path, workers=2, block=2,
                                        adapters={0: "index:0", 1: "name:llvmpipe"}, **COMMON)
    same_files(tmp_path, plain_out, [LOG] + TABLES)
    workers = result.pop("workers")
    paths = ("csv", "md")
    assert {k: v for k, v in result.items() if k not in paths} == \
        {k: v for k, v in plain_table.items() if k not in paths}
    # Two actors, one fake GPU each, each opening the adapter its GPU id maps to.
    assert sorted(w["gpu_ids"][0] for w in workers) == [0, 1], workers
    assert {w["gpu_ids"][0]: w["adapter"] for w in workers} == {0: "index:0",
                                                                1: "name:llvmpipe"}
    expected = os.environ.get("RSP_EXPECT_ADAPTER")
    if expected:
        assert all(expected in w["device"] for w in workers), workers
    # A rerun finds everything in the log and schedules nothing.
    before = (tmp_path / LOG).read_bytes()
    again = rsp_ray.eval_pointing_game(WEIGHTS, synth_set, out=tmp_path, workers=2, **COMMON)
    assert again["workers"] == [] and (tmp_path / LOG).read_bytes() == before


def test_a_killed_worker_loses_and_doubles_nothing(cluster, synth_set, plain, tmp_path):
    plain_out, _ = plain
    marker = Path(os.environ[rsp_ray.KILL_ONCE_ENV])
    marker.write_text("armed")
    result = rsp_ray.eval_pointing_game(WEIGHTS, synth_set, out=tmp_path, workers=2, block=2,
                                        **COMMON)
    assert not marker.exists(), "no worker was killed"
    pids = {w["pid"] for w in result["workers"]}
    assert len(pids) >= 2, result["workers"]
    lines = (tmp_path / LOG).read_text().splitlines()[1:]
    keys = [(json.loads(line)["image"], json.loads(line)["method"]) for line in lines]
    assert len(keys) == len(set(keys)) == 9 * 3
    same_files(tmp_path, plain_out, [LOG] + TABLES)


DRIVER = textwrap.dedent("""
    import sys, ray, rsp.ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    rsp.ray.eval_pointing_game(sys.argv[2], sys.argv[3], out=sys.argv[4], workers=2, block=1,
                               methods=["rsp", "gradcam", "center"], size=0, batch=4)
""")


def test_a_killed_driver_resumes_without_scoring_twice(cluster, synth_set, plain, tmp_path):
    plain_out, _ = plain
    run = [sys.executable, "-c", DRIVER, cluster, str(WEIGHTS), str(synth_set), str(tmp_path)]
    env = dict(os.environ, **{rsp_ray.DRIVER_EXIT_ENV: "7"})
    killed = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == 75, killed.stderr[-2000:]
    first = (tmp_path / LOG).read_text().splitlines()
    assert 1 + 7 <= len(first) < 1 + 9 * 3, len(first)
    assert not (tmp_path / TABLES[0]).exists()
    done = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    after = (tmp_path / LOG).read_text().splitlines()
    assert after[:len(first)] == first
    keys = [(json.loads(line)["image"], json.loads(line)["method"]) for line in after[1:]]
    assert len(keys) == len(set(keys)) == 9 * 3
    same_files(tmp_path, plain_out, TABLES)


def test_ray_faithfulness_and_sensitivity_are_the_plain_functions(cluster, synth_set, tmp_path):
    args = dict(methods=["rsp", "gradient"], step=3000, size=0)
    plain = rsp.eval_faithfulness(WEIGHTS, synth_set, out=tmp_path / "plain", **args)
    spread = rsp_ray.eval_faithfulness(WEIGHTS, synth_set, out=tmp_path / "ray", workers=2,
                                       block=3, **args)
    spread.pop("workers")
    assert {k: v for k, v in spread.items() if k not in ("csv", "md")} == \
        {k: v for k, v in plain.items() if k not in ("csv", "md")}
    same_files(tmp_path / "ray", tmp_path / "plain",
               ["faithfulness.synth.csv", "faithfulness.synth.md",
                "faithfulness.synth.synth_vgg.jsonl"])
    sens = dict(methods=["rsp", "gradcam", "gradient"], images=3, size=0)
    plain_s = rsp.eval_sensitivity(WEIGHTS, synth_set, out=tmp_path / "plain", **sens)
    ray_s = rsp_ray.eval_sensitivity(WEIGHTS, synth_set, out=tmp_path / "ray", workers=2,
                                     **sens)
    assert ray_s["curves"] == plain_s["curves"] and ray_s["steps"] == plain_s["steps"]
    same_files(tmp_path / "ray", tmp_path / "plain",
               ["sensitivity.synth_vgg.csv", "sensitivity.synth_vgg.md"])


def read_safetensors(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dtype = {"F32": "<f4", "I64": "<i8"}[info["dtype"]]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dtype).reshape(info["shape"])
    return out


def test_explain_dataset_files_are_the_explainers_maps(cluster, synth_set, tmp_path):
    images = sorted((synth_set / "JPEGImages").glob("*.jpg"))[:4]
    targets = [[0, 2], 1, [3], [5, 4]]
    index = rsp_ray.explain_dataset(images, WEIGHTS, ["rsp", "lrp-ab"], targets,
                                    out=tmp_path / "maps", size=32, workers=2, block=1)
    assert len(index) == 2 * (2 + 1 + 1 + 2)
    with open(tmp_path / "maps" / "index.csv") as f:
        assert len(list(csv.DictReader(f))) == len(index)
    with rsp.Explainer(weights=WEIGHTS, size=32) as ex:
        for row in index:
            saved = read_safetensors(tmp_path / "maps" / row["file"])
            e = ex.explain(row["image"], method=row["method"], targets=[row["class"]])
            assert list(saved["target"]) == [row["class"]]
            assert np.array_equal(saved["heatmap"], e.heatmap), row
            assert np.array_equal(saved["relevance"], e.relevance), row
    # A rerun skips every file that exists (none is rewritten).
    stamps = {r["file"]: (tmp_path / "maps" / r["file"]).stat().st_mtime_ns for r in index}
    again = rsp_ray.explain_dataset(images, WEIGHTS, methods=["rsp", "lrp-ab"],
                                    targets=targets, out=tmp_path / "maps", size=32, workers=1)
    assert again == index
    assert all((tmp_path / "maps" / f).stat().st_mtime_ns == t for f, t in stamps.items())
