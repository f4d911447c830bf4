"""Compares the newest checkpoints of two train.py run folders, leaf by leaf.

    python benchmarks/compare_runs.py RUN_A RUN_B [--exact | --rtol=R --atol=A]

Prints one JSON line (steps, number of leaves, the largest absolute difference, the
largest difference over its tolerance ``atol + rtol * |b|``, and whether they pass) and
exits 0 if they do, 1 if not. ``--exact``: bit for bit. Each checkpoint is restored onto
this process's first device, whatever wrote it (`jaxgan.checkpointing.newest_arrays`).
"""

import json
import sys

import numpy as np

from jaxgan.checkpointing import newest_arrays


def main(argv):
    a_dir, b_dir = argv[:2]
    exact = "--exact" in argv
    opts = dict(a.lstrip("-").split("=") for a in argv[2:] if "=" in a)
    rtol, atol = float(opts.get("rtol", 1e-4)), float(opts.get("atol", 1e-5))
    (step_a, a), (step_b, b) = newest_arrays(a_dir), newest_arrays(b_dir)
    max_abs = worst = 0.0  # worst: max |a - b| / (atol + rtol |b|); <= 1 passes np.allclose
    unequal = []
    ok = step_a == step_b and a.keys() == b.keys()
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        diff = np.abs(x - y)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        worst = max(worst, float((diff / (atol + rtol * np.abs(y))).max(initial=0.0)))
        same = np.array_equal(a[name], b[name]) if exact else np.allclose(x, y, rtol, atol)
        if not same:
            unequal.append(name)
    ok = ok and not unequal
    print(json.dumps({
        "a": a_dir, "b": b_dir, "steps": [step_a, step_b], "leaves": len(a),
        "mode": "exact" if exact else f"rtol={rtol},atol={atol}", "max_abs_diff": max_abs,
        "worst_diff_over_tolerance": worst, "unequal_leaves": len(unequal),
        "first_unequal": unequal[:3],
        "pass": ok,
    }))  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
