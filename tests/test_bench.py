"""The benchmark command: runs jaxgan's own train step and prints sane JSON (no timing limits)."""

import json
import os
import subprocess
import sys

import pytest

from jaxgan import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = {
    "model", "batch", "steps", "img_per_s", "step_ms", "compile_s", "flops_per_iter",
    "gflops_per_s", "peak_gflops_per_s", "fraction_of_peak", "fresh_g_noise", "jax", "jaxlib",
}  # fmt: skip


def run_bench(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "jaxgan.bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc


@pytest.mark.parametrize("fresh", [False, True])
def test_bench_prints_one_sane_json_line_per_batch(fresh):
    flag = "--fresh_g_noise" if fresh else "--no-fresh_g_noise"
    proc = run_bench("--model=mlp", "--batch", "8", "4", "--steps=2", "--warmup=1", flag)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, batch in zip(lines, (8, 4), strict=True):
        rec = json.loads(line)
        assert FIELDS <= set(rec)
        assert rec["model"] == "mlp" and rec["batch"] == batch and rec["steps"] == 2
        assert rec["fresh_g_noise"] is fresh
        assert rec["finite"] is True
        assert rec["img_per_s"] > 0 and rec["step_ms"] > 0 and rec["compile_s"] > 0
        assert rec["peak_gflops_per_s"] > 0 and 0 < rec["fraction_of_peak"]
        # XLA's FLOP count is at least the matmuls of docs/MODELS.md's iteration (mlp, batch B):
        # 3 F_G - F_G1 + 8 F_D - 2 F_D1, here with F_D's last layer counted too.
        f_g = 2 * batch * (100 * 1200 + 1200 * 1200 + 1200 * 784)
        f_d = 2 * batch * (784 * 1200 + 240 * 1200 + 240)
        minimum = 3 * f_g - 2 * batch * 100 * 1200 + 8 * f_d - 2 * 2 * batch * 784 * 1200
        if fresh:
            minimum += f_g - 2 * batch * 100 * 1200  # the second G forward
        per_param = 60 * (2_503_984 + 1_231_441)  # Adam, EMA, norms and finiteness checks
        assert minimum <= rec["flops_per_iter"] <= 1.2 * minimum + per_param
        want_gflops = rec["flops_per_iter"] / rec["step_ms"] / 1e6
        assert abs(rec["gflops_per_s"] - want_gflops) <= 0.01 * want_gflops + 0.01


def test_bench_rejects_unknown_model():
    proc = run_bench("--model=resnet", "--batch=8")
    assert proc.returncode == 2 and "resnet" in proc.stderr


def test_build_bench_gan_turns_mlp_dropout_off():
    gan = bench.build_bench_gan("mlp")
    assert gan.discriminator.dropout is False
    assert bench.build_bench_gan("dcgan28", conv="lax").generator.conv == "lax"
    assert bench.build_bench_gan("toy2d").models.data_shape == (2,)  # the default run's nets
    with pytest.raises(ValueError, match="dcgan16"):
        bench.build_bench_gan("dcgan16")


def test_fused_dispatch_runs_the_same_iterations():
    # steps_per_dispatch=2 runs the same two iterations as a lax.scan: same losses (to
    # float rounding), and the FLOP count is that of one step, not of the scan's body once.
    one = bench.run("mlp", 4, steps=2, warmup=0, peak_flops=1e9, steps_per_dispatch=1)
    two = bench.run("mlp", 4, steps=2, warmup=0, peak_flops=1e9, steps_per_dispatch=2)
    assert (one["steps_per_dispatch"], two["steps_per_dispatch"]) == (1, 2)
    assert two["flops_per_iter"] == one["flops_per_iter"]
    for name in ("d_loss", "g_loss"):
        assert two[name] == pytest.approx(one[name], rel=1e-5)
    with pytest.raises(ValueError, match="multiple of steps_per_dispatch"):
        bench.run("mlp", 4, steps=3, warmup=0, peak_flops=1e9, steps_per_dispatch=2)
