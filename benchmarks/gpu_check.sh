#!/usr/bin/env bash
# The GPU check of docs/BENCHMARKS.md, as one prepared script for a lent GPU machine.
#
#   bash benchmarks/gpu_check.sh [quick]
#
# Needs, beside the checkout, an ignored folder .gpu/ holding: whl/ (wheels the machine
# lacks: ml_collections, tensorboardX), mnist/ (the MNIST IDX files) and peer_torch.py
# (a copy of shared/peers/peer_torch.py). Writes everything under $OUT (default
# /tmp/gpu_check). Stages run from the most to the least important, each under its own
# time limit, so a short lease still returns the first ones:
#   1. env          GPU, driver, versions
#   2. bench spd    jaxgan.bench, 1 vs 10 steps per dispatch, 4 networks/batches
#   3. 1 vs N       train.py grid25 on the GPU (1 device) vs 4 and 1 simulated CPU devices,
#                   same global batch, float32 matmuls at "highest" precision; and the GPU
#                   run twice with --xla_gpu_deterministic_ops: bit for bit?
#   4. peer         shared/peers/peer_torch.py on the GPU (benchmarks/peer_cuda.py)
#   5. bench lax    the DCGANs with XLA's own convolutions (cuDNN) instead of jaxgan's
#   6. dcgan det    train.py mnist_dcgan twice with deterministic ops (bits), once without
#   7. bench fresh  fresh_g_noise=true; peer --fresh-g-noise
#   8. default      README's `python train.py` (grid25, 10k steps), timed
# GPU_PLATFORM=cpu runs it all on the CPU (to try the script out, with `quick`).
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
QUICK=${1:-}
GPU=${GPU_PLATFORM:-cuda}
PY=${PY:-python3}
PEER_PY=${PEER_PY:-$PY}
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_site .gpu/whl/*.whl \
    && export PYTHONPATH=/tmp/gpu_site:$PWD
fi
T0=$(date +%s)
stage() { echo "== +$(( $(date +%s) - T0 ))s $*"; }
if [ "$QUICK" = quick ]; then Q=--quick; STEPS=4; DSTEPS=20; DEFAULT_STEPS=200; else Q=; STEPS=5; DSTEPS=200; DEFAULT_STEPS=10000; fi
RUNS=/tmp/gpu_runs; rm -rf "$RUNS"; mkdir -p "$RUNS"
LOGS=$RUNS/logs; mkdir -p "$LOGS"
# $OUT keeps at most 8 files: env.txt, bench.jsonl, peer.jsonl, compare.jsonl, logs.txt, 2 PNGs.
keep() { for f in "$@"; do [ -f "$f" ] && { echo "---- $f"; tail -n 25 "$f"; } >>"$OUT/logs.txt"; done; }
DET="--xla_gpu_deterministic_ops=true"
[ "$GPU" = cuda ] || DET=""

stage env
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
  $PY -c "
import importlib.metadata as m, platform
def v(n):
    try: return m.version(n)
    except m.PackageNotFoundError: return None
print('python', platform.python_version(), {n: v(n) for n in ['jax','jaxlib','flax','optax','orbax-checkpoint','numpy','ml_collections','torch']})"
  JAX_PLATFORMS=$GPU $PY -c "import jax; print(jax.devices(), jax.default_backend())"
  nproc; } 2>&1 | tee "$OUT/env.txt"

stage bench spd
JAX_PLATFORMS=$GPU timeout 200 $PY benchmarks/gpu_bench.py "$OUT/bench.jsonl" --only=spd $Q 2>"$LOGS/bench_spd.err"
keep "$LOGS/bench_spd.err"

stage "1 vs N devices; determinism (grid25)"
TRAIN=(train.py --config=jaxgan/configs/grid25.py --config.num_steps=$STEPS --config.eval_every=$STEPS
       --config.ckpt_every=$STEPS --config.log_every=1 --config.num_eval_samples=200
       --config.g_lr=1e-4 --config.d_lr=1e-4 --config.optimizer.b1=0.8 --config.optimizer.lr_decay=1
       --config.r1_gamma=0 --config.ema_decay=0.999 --config.pack=1)
HIGH=JAX_DEFAULT_MATMUL_PRECISION=highest
env $HIGH JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=4 timeout 150 $PY "${TRAIN[@]}" --workdir=$RUNS/cpu4 >"$LOGS/grid_cpu4.log" 2>&1 &
env $HIGH JAX_PLATFORMS=cpu timeout 150 $PY "${TRAIN[@]}" --workdir=$RUNS/cpu1 >"$LOGS/grid_cpu1.log" 2>&1 &
env $HIGH JAX_PLATFORMS=$GPU XLA_FLAGS=$DET timeout 150 $PY "${TRAIN[@]}" --workdir=$RUNS/gpu_a >"$LOGS/grid_gpu_a.log" 2>&1
env $HIGH JAX_PLATFORMS=$GPU XLA_FLAGS=$DET timeout 150 $PY "${TRAIN[@]}" --workdir=$RUNS/gpu_b >"$LOGS/grid_gpu_b.log" 2>&1
wait
for r in cpu4 cpu1 gpu_a gpu_b; do
  echo "$r: $($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['sessions'][0]['devices'])" $RUNS/$r/run_info.json 2>&1 | tail -1 | head -c 300)"
  grep "^step $STEPS/" "$LOGS/grid_$r.log" | head -1; done
{ JAX_PLATFORMS=cpu $PY benchmarks/compare_runs.py $RUNS/gpu_a $RUNS/cpu4
  JAX_PLATFORMS=cpu $PY benchmarks/compare_runs.py $RUNS/cpu1 $RUNS/cpu4
  JAX_PLATFORMS=cpu $PY benchmarks/compare_runs.py $RUNS/gpu_a $RUNS/cpu1
  JAX_PLATFORMS=cpu $PY benchmarks/compare_runs.py $RUNS/gpu_a $RUNS/gpu_b --exact; } 2>&1 | grep -v '^WARNING' | tee -a "$OUT/compare.jsonl"
keep "$LOGS"/grid_*.log

stage peer
if [ -f .gpu/peer_torch.py ]; then
  for mb in "mlp 64" "dcgan28 64" "dcgan28 256" "dcgan64 64"; do
    set -- $mb
    timeout 60 $PEER_PY benchmarks/peer_cuda.py .gpu/peer_torch.py --model $1 --batch $2 --iters $((DSTEPS > 100 ? 100 : DSTEPS)) --warmup 20 2>>"$LOGS/peer.err" | tee -a "$OUT/peer.jsonl"
  done
  keep "$LOGS/peer.err"
fi

stage bench lax
JAX_PLATFORMS=$GPU timeout 120 $PY benchmarks/gpu_bench.py "$OUT/bench.jsonl" --only=lax $Q 2>"$LOGS/bench_lax.err"; keep "$LOGS/bench_lax.err"

stage "dcgan determinism (mnist_dcgan, $DSTEPS steps)"
DC=(train.py --config=jaxgan/configs/mnist_dcgan.py --config.data.idx_dir=.gpu/mnist --config.num_steps=$DSTEPS
    --config.eval_every=$DSTEPS --config.ckpt_every=$DSTEPS --config.eval_metrics=False --config.log_every=100)
env JAX_PLATFORMS=$GPU XLA_FLAGS=$DET timeout 90 $PY "${DC[@]}" --workdir=$RUNS/dc_a >"$LOGS/dc_a.log" 2>&1
env JAX_PLATFORMS=$GPU XLA_FLAGS=$DET timeout 90 $PY "${DC[@]}" --workdir=$RUNS/dc_b >"$LOGS/dc_b.log" 2>&1
env JAX_PLATFORMS=$GPU timeout 90 $PY "${DC[@]}" --workdir=$RUNS/dc_nodet >"$LOGS/dc_nodet.log" 2>&1
tail -2 "$LOGS/dc_a.log"
{ JAX_PLATFORMS=cpu $PY benchmarks/compare_runs.py $RUNS/dc_a $RUNS/dc_b --exact
  JAX_PLATFORMS=cpu $PY benchmarks/compare_runs.py $RUNS/dc_a $RUNS/dc_nodet --exact; } 2>&1 | grep -v '^WARNING' | tee -a "$OUT/compare.jsonl"
keep "$LOGS"/dc_*.log
cp "$(ls $RUNS/dc_a/samples_*.png | tail -1)" "$OUT/dcgan_samples.png" 2>/dev/null

stage bench fresh
JAX_PLATFORMS=$GPU timeout 120 $PY benchmarks/gpu_bench.py "$OUT/bench.jsonl" --only=fresh $Q 2>"$LOGS/bench_fresh.err"; keep "$LOGS/bench_fresh.err"
if [ -f .gpu/peer_torch.py ]; then
  for mb in "mlp 64" "dcgan28 64" "dcgan28 256" "dcgan64 64"; do
    set -- $mb
    timeout 60 $PEER_PY benchmarks/peer_cuda.py .gpu/peer_torch.py --model $1 --batch $2 --iters $((DSTEPS > 100 ? 100 : DSTEPS)) --warmup 20 --fresh-g-noise 2>>"$LOGS/peer.err" | tee -a "$OUT/peer.jsonl"
  done
fi

stage "default run (python train.py, $DEFAULT_STEPS steps)"
S=$(date +%s)
env JAX_PLATFORMS=$GPU timeout 150 $PY train.py --config.num_steps=$DEFAULT_STEPS --workdir=$RUNS/default >"$LOGS/default.log" 2>&1
echo "rc=$? wall_s=$(( $(date +%s) - S ))"; tail -4 "$LOGS/default.log"; keep "$LOGS/default.log"
cp "$(ls $RUNS/default/samples_*.png | tail -1)" "$OUT/default_samples.png" 2>/dev/null
stage done
$PY - "$OUT" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
def rows(name):
    path = os.path.join(out, name)
    return [json.loads(l) for l in open(path) if l.startswith("{")] if os.path.exists(path) else []
print("model    batch fresh spd conv  img/s      step_ms  GFLOP/s  frac  compile_s")
for r in rows("bench.jsonl"):
    if "error" in r:
        print(r["model"], r["batch"], "ERROR", r["error"][:150]); continue
    print(f'{r["model"]:8} {r["batch"]:5} {str(r["fresh_g_noise"])[0]:5} {r["steps_per_dispatch"]:3} {str(r["conv"]):5} '
          f'{r["img_per_s"]:10.0f} {r["step_ms"]:8.3f} {r["gflops_per_s"]:8.0f} {r["fraction_of_peak"]:5.3f} {r["compile_s"]:6.1f}')
for r in rows("peer.jsonl"):
    print(f'peer {r["impl"]:14} {r["model"]:8} {r["batch"]:5} {r["img_per_s"]:10.0f} img/s {r["step_ms"]:8.3f} ms')
for r in rows("compare.jsonl"):
    print(os.path.basename(r["a"]), "vs", os.path.basename(r["b"]), r["mode"], "pass" if r["pass"] else "FAIL",
          f'max_abs {r["max_abs_diff"]:.3g} worst/tol {r["worst_diff_over_tolerance"]:.3g}')
PYEOF
