"""jaxgan's bench against the PyTorch peer, interleaved, each run in a fresh process.

    python benchmarks/interleave.py --peer_python=/path/to/torch/venv/bin/python \\
        --peer_script=../shared/peers/peer_torch.py [--rounds=3] [--out=FILE.jsonl]

For every network, batch and `fresh_g_noise` of docs/BENCHMARKS.md's table, each round runs
`python -m jaxgan.bench` and the peer back to back, alternating which goes first. Prints one
JSON line per run (with the 1-minute load average before it) and, last, one summary line per
configuration: median img/s of each and the median of the per-round ratios jaxgan/peer.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

# (model, batch, timed iterations, warm-up iterations)
SIZES = [
    ("mlp", 64, 100, 10),
    ("dcgan28", 64, 20, 3),
    ("dcgan28", 256, 6, 1),
    ("dcgan64", 64, 8, 2),
]


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON line in the output:\n{stdout[-2000:]}")
    return json.loads(lines[-1])


def run_jaxgan(model, batch, steps, warmup, fresh):
    cmd = [sys.executable, "-m", "jaxgan.bench", f"--model={model}", f"--batch={batch}"]
    noise = "--fresh_g_noise" if fresh else "--no-fresh_g_noise"
    cmd += [f"--steps={steps}", f"--warmup={warmup}", noise]
    proc = subprocess.run([c for c in cmd if c], capture_output=True, text=True, check=True)
    return last_json(proc.stdout)


def run_peer(args, model, batch, steps, warmup, fresh):
    cmd = [args.peer_python, args.peer_script, "--model", model, "--batch", str(batch)]
    cmd += ["--iters", str(steps), "--warmup", str(warmup)] + (["--fresh-g-noise"] if fresh else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return last_json(proc.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer_python", required=True)
    parser.add_argument("--peer_script", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="also append every JSON line here")
    parser.add_argument("--only", default=None, help="one model name")
    args = parser.parse_args(argv)

    def emit(record):
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")

    summaries = []
    for model, batch, steps, warmup in SIZES:
        if args.only and model != args.only:
            continue
        for fresh in (False, True):
            ours, peers = [], []
            for r in range(args.rounds):
                order = ("jaxgan", "peer") if r % 2 == 0 else ("peer", "jaxgan")
                for impl in order:
                    load = os.getloadavg()[0]
                    if impl == "jaxgan":
                        rec = run_jaxgan(model, batch, steps, warmup, fresh)
                        ours.append(rec)
                    else:
                        rec = run_peer(args, model, batch, steps, warmup, fresh)
                        peers.append(rec)
                    emit({**rec, "round": r, "load_1min": round(load, 2)})
            ratios = [a["img_per_s"] / b["img_per_s"] for a, b in zip(ours, peers, strict=True)]
            summaries.append({
                "summary": True, "model": model, "batch": batch, "fresh_g_noise": fresh,
                "jaxgan_img_per_s": statistics.median(a["img_per_s"] for a in ours),
                "peer_img_per_s": statistics.median(b["img_per_s"] for b in peers),
                "ratio_median": round(statistics.median(ratios), 3),
                "ratios": [round(x, 3) for x in ratios],
                "jaxgan_gflops_per_s": statistics.median(a["gflops_per_s"] for a in ours),
                "fraction_of_peak": statistics.median(a["fraction_of_peak"] for a in ours),
                "peak_gflops_per_s": statistics.median(a["peak_gflops_per_s"] for a in ours),
                "compile_s": statistics.median(a["compile_s"] for a in ours),
            })  # fmt: skip
            emit(summaries[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
