"""Explains one image with several methods and saves each signed map and its rendering
(`.npy`).

    python explain_image.py WEIGHTS IMAGE OUT_DIR [SIZE]

A typed use of the API: tools/test_wheel.sh runs it against the installed wheel and
checks it with `mypy --strict`.
"""

import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import numpy.typing as npt

import rsp

METHODS: Tuple[rsp.Method, ...] = ("rsp", "gradcam", "lrp-eps")


def explain(weights: Path, image: Path, out: Path, size: int) -> Dict[str, float]:
    """Writes one map per method into `out`; returns each map's share of positive
    relevance."""
    out.mkdir(parents=True, exist_ok=True)
    shares: Dict[str, float] = {}
    with rsp.Explainer(weights=weights, size=size) as ex:
        x: npt.NDArray[np.float32] = rsp.load_image(image, size=ex.size)[None]
        top: List[Tuple[int, float]] = ex.predict(x, k=1)[0]
        target = top[0][0]
        for method in METHODS:
            e: rsp.Explanation = ex.explain(x, method=method, targets=target)
            heat = e.heatmap[0]
            np.save(out / f"{method}.npy", heat)
            rgb: npt.NDArray[np.uint8] = rsp.render(heat, cmap="bwr")
            np.save(out / f"{method}.rgb.npy", rgb)
            total = float(np.abs(heat).sum())
            shares[method] = float(heat.clip(min=0).sum()) / total if total > 0 else 0.0
        print(f"{image}: class {target} on {ex.adapter}")
    return shares


def main(argv: List[str]) -> int:
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    size = int(argv[4]) if len(argv) == 5 else 224
    for method, share in explain(Path(argv[1]), Path(argv[2]), Path(argv[3]), size).items():
        print(f"{method}: {share:.3f} of the relevance is positive")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
