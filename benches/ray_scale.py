"""Throughput of a Pointing Game run on the generated set: the plain function, shards in
separate processes, and rsp.ray with 1 and 2 workers (docs/scale.md).

    python benches/ray_scale.py [--images 48] [--size 64] [--gpus 0]

Needs the wheel with the [ray] extra and the command line (target/release/rsp, for
`rsp synth` and the shards). Each configuration scores the same images into a fresh
folder; the tables must come out identical (checked) and the wall time is printed as
images/s and maps/s. --gpus N starts the local Ray with N GPUs (fake ones on a machine
without: each worker then opens the default adapter).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray

import rsp
import rsp.ray

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "target" / "release" / "rsp"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--methods", default="rsp,gradcam")
    p.add_argument("--weights", default=str(ROOT / "weights" / "synth_vgg.safetensors"))
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rsp-scale-"))
    data = work / "synth"
    subprocess.run([str(CLI), "synth", "--out", str(data), "--train", "0", "--val", "0",
                    "--test", str(a.images), "--size", str(a.size), "--seed", "11"],
                   check=True, capture_output=True)
    methods = a.methods.split(",")
    common = dict(methods=methods, size=0, batch=16)
    maps = None
    results = {}

    def report(name: str, seconds: float, csv: Path) -> None:
        results[name] = csv.read_bytes()
        print(f"{name:<22} {seconds:7.1f} s  {a.images / seconds:6.2f} images/s  "
              f"{maps / seconds:6.2f} maps/s", flush=True)

    t = time.perf_counter()
    rsp.eval_pointing_game(a.weights, data, out=work / "plain", **common)
    seconds = time.perf_counter() - t
    log = (work / "plain" / "pointing-game.synth.synth_vgg.jsonl").read_text().splitlines()
    maps = sum(line.count("class_index") for line in log[1:])
    report("plain (1 process)", seconds, work / "plain" / "pointing-game.synth.csv")

    for n in (2,):
        out = work / f"shards{n}"
        t = time.perf_counter()
        procs = [subprocess.Popen([str(CLI), "eval", "pointing-game", "--dataset", str(data),
                                   "--weights", a.weights, "--methods", a.methods, "--size", "0",
                                   "--autotune", "off", "--out", str(out), "--shard", f"{i}/{n}"],
                                  stdout=subprocess.DEVNULL) for i in range(n)]
        assert all(pr.wait() == 0 for pr in procs)
        rsp.eval_merge(out)
        report(f"{n} shards + merge", time.perf_counter() - t,
               out / "pointing-game.synth.csv")

    ray.init(num_cpus=2, num_gpus=a.gpus, include_dashboard=False, log_to_driver=False)
    for workers in (1, 2):
        out = work / f"ray{workers}"
        t = time.perf_counter()
        rsp.ray.eval_pointing_game(a.weights, data, out=out, workers=workers, block=8, **common)
        report(f"rsp.ray, {workers} worker(s)", time.perf_counter() - t,
               out / "pointing-game.synth.csv")
    ray.shutdown()
    first = next(iter(results.values()))
    assert all(v == first for v in results.values()), "the tables differ"
    print(f"tables identical; {maps} maps of {len(methods)} methods; folder {work}")


if __name__ == "__main__":
    sys.exit(main())
