"""Runs a list of `jaxgan.bench` configurations in one process (one import, one peak).

    python benchmarks/gpu_bench.py OUT.jsonl [--quick] [--only=spd|lax|fresh]

Prints and appends one JSON line per configuration; a failing configuration prints an
``error`` record and the next one runs. Written for the GPU check (`gpu_check.sh`): on an
accelerator each jitted call costs microseconds to dispatch, so the fused steps
(``steps_per_dispatch``) and the convolution formulation matter differently than on CPU.
"""

import json
import sys
import time
import traceback

from jaxgan import bench

SIZES = [("mlp", 64), ("dcgan28", 64), ("dcgan28", 256), ("dcgan64", 64)]


def configs(group: str, quick: bool):
    steps = 20 if quick else 100
    for model, batch in SIZES:
        if group == "spd":  # one dispatch per step against 10 per dispatch, the peer's arithmetic
            for spd in (1, 10):
                yield dict(model=model, batch=batch, steps=steps, warmup=20, steps_per_dispatch=spd,
                           fresh_g_noise=False)  # fmt: skip
        elif group == "lax" and model != "mlp":  # XLA's own convolutions (cuDNN on a GPU)
            yield dict(model=model, batch=batch, steps=steps, warmup=20, conv="lax",
                       fresh_g_noise=False)  # fmt: skip
        elif group == "fresh":  # Algorithm 1's arithmetic
            yield dict(model=model, batch=batch, steps=steps, warmup=20, fresh_g_noise=True)


def main(argv):
    out_path = argv[0]
    quick = "--quick" in argv
    only = [a.split("=", 1)[1] for a in argv if a.startswith("--only=")]
    groups = only or ["spd", "lax", "fresh"]
    peak = bench.measure_matmul_peak()
    for group in groups:
        for cfg in configs(group, quick):
            t0 = time.perf_counter()
            try:
                record = bench.run(peak_flops=peak, **cfg)
            except Exception as err:  # report and go on: one broken config must not hide the rest
                traceback.print_exc()
                record = {"error": f"{type(err).__name__}: {err}"[:500], **cfg}
            record["group"] = group
            record["wall_s"] = round(time.perf_counter() - t0, 1)
            line = json.dumps(record)
            print(line, flush=True)
            with open(out_path, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
