"""Summarises an rsp autotune cache (autotune.json): which variant each GEMM problem
chose, and for the inexact variants (matrix units, Winograd) how often they were
rejected (with the first reasons) and their time against the best exact variant of the
same problem."""
import json
import sys
from collections import Counter

choices = json.load(open(sys.argv[1]))["choices"]
chosen = Counter()
rejected = Counter()
reasons = []
ratios = {}
for key, c in choices.items():
    mode = "f16" if "precision f16" in key else "f32"
    chosen[(mode, c["variant"])] += 1
    # The registry's verdict, recorded by rsp in each tuned key.
    inexact = set(c.get("inexact", []))
    exact = [t["Timed"] for n, t in c["trials"].items() if n not in inexact and "Timed" in t]
    for name, t in c["trials"].items():
        if name not in inexact:
            continue
        if "Rejected" in t:
            rejected[name] += 1
            if len(reasons) < 5:
                reasons.append(f"{name}: {t['Rejected']} [{key.split(' | ', 1)[1][:90]}]")
        elif exact:
            ratios.setdefault(name, []).append(min(exact) / t["Timed"])
print("chosen:", ", ".join(f"{m} {v}: {n}" for (m, v), n in sorted(chosen.items())))
print("inexact-variant rejections:", dict(rejected) or "none")
for r in reasons:
    print("  ", r)
for name, rs in ratios.items():
    rs.sort()
    print(f"{name}: best exact time / its time over {len(rs)} problems: "
          f"min {rs[0]:.2f}, median {rs[len(rs) // 2]:.2f}, max {rs[-1]:.2f}")
