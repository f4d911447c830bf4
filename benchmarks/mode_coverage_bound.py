"""The best mode coverage any reweighting of a 2-D run's G can reach, per seed.

    python benchmarks/mode_coverage_bound.py RUN [--seeds=0,1,...] [--step=N]
        [--num=2000000] [--bin_size=B] [--min_count=1]

DRS and MH-GAN only accept or reject G's samples, so with the exact density ratio their
output is the mixture restricted to G's support, and that is the best any D can do
(`jaxgan.metrics.mode_coverage_bound`). This draws ``--num`` samples of each seed's G
(noise seeds 1000, 1001, ... in chunks of 200,000; not the evaluation's noise seed 0),
estimates the support on a grid of ``--bin_size`` (default 0.4 σ) and prints one JSON
line per seed (the bound's modes, high quality, reverse KL, the mixture's mass in the
support and the least-covered mode), then the mean ± standard error over the seeds.
Compare with the guided rows of docs/RESULTS.md: a KL bound above the bar means no
sampler can meet it with this G.
"""

import json
import sys

import numpy as np

from jaxgan import metrics, run_folder

CHUNK = 200_000


def main(argv):
    opts = dict(a.lstrip("-").split("=", 1) for a in argv[1:] if "=" in a)
    unknown = set(opts) - {"seeds", "step", "num", "bin_size", "min_count"}
    if not argv or argv[0].startswith("-") or unknown:
        print(__doc__, file=sys.stderr)
        return 2
    workdir = argv[0]
    step = int(opts["step"]) if "step" in opts else None
    num = int(float(opts.get("num", 2_000_000)))
    bin_size = float(opts["bin_size"]) if "bin_size" in opts else None
    min_count = int(opts.get("min_count", 1))
    first = run_folder.open_run(workdir, step=step)
    if first.dataset.kind != "mixture":
        print(f"{workdir} trained on {first.dataset.name}, not a 2-D mixture", file=sys.stderr)
        return 2
    num_seeds = int(first.config.get("num_seeds", 1))
    seeds = [int(s) for s in opts["seeds"].split(",")] if "seeds" in opts else range(num_seeds)
    means, std = np.asarray(first.dataset.arrays["means"]), float(first.dataset.std)
    rows = []
    for seed_index in seeds:
        run = run_folder.open_run(workdir, step=step, seed_index=seed_index)
        generated = np.concatenate([
            np.asarray(run.sample(min(CHUNK, num - start), 1000 + start // CHUNK))
            for start in range(0, num, CHUNK)
        ])  # fmt: skip
        bound = metrics.mode_coverage_bound(
            generated, means, std, bin_size=bin_size, min_count=min_count
        )
        support = bound.pop("mode_support")
        row = {
            "workdir": workdir, "step": run.step, "seed_index": seed_index, "samples": num,
            "bin_size": bin_size or 0.4 * std, "min_count": min_count, **bound,
            "least_covered_mode": int(np.argmin(support)),
            "least_mode_support": min(support),
        }  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {"workdir": workdir, "seeds": len(rows)}
    for name in ("modes", "high_quality", "reverse_kl", "support_mass"):
        mean, se = metrics.mean_and_standard_error([r[name] for r in rows])
        summary[name] = f"{mean:.4g} ± {se:.2g}"
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
