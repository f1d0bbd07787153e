#!/usr/bin/env bash
# One prepared GPU session (the `device` tool's H100/H200), issue 16 items 4-7 in ~9 minutes:
#
#   speed      bf16 N_W model step B32 x T1280, plain conv1 vs PyTorch (item 6)       ~90 s
#   pallas     the same step with the fused Pallas conv1 block (item 6)               ~60 s
#   profile    per-kernel device time of that step, plain vs fused conv1 (item 6)    ~40 s
#   pipeline   full loop with the real reader vs the bare step, bf16 (item 5)        ~160 s
#   inference  predict throughput on long files (item 7)                              ~70 s
#   tests      the suite (not the CPU-subprocess `slow` tests) on the GPU (item 4)   ~120 s
#
#   bash bench/device_run.sh [STEP ...]   default: all of the above, in that order;
#                                         results land in $OUT (or ./device_out)
#
# Run from the repository root: every benchmark runs as `python3 -m bench.<name>`. The pipeline
# step's recipe is the config file configs/experiments/gpu_full_bf16.py (full size, bfloat16,
# 12 reading threads, prefetch 4).
#
# Run it as the run tool's command with carry [".whl"] and a timeout of ~590 s; every step has its
# own time limit (so one slow step cannot eat the others' time) and writes its log and JSON
# under $OUT as it goes. Timed steps run alone on the GPU; the data set is built on the host CPU
# meanwhile. All steps share one persistent compilation cache (/tmp/jax_cache, plus XLA's GPU
# autotuning cache in it): programs compiled by one step (the bf16 step by `speed` and
# `pallas`) are loaded, not compiled again, by the next (`profile`).
#
# The machine has jax/flax/optax/torch but no registry: the other packages travel as cp312 wheels
# in .whl/ (see bench/README.md, "GPU runs"; pytest-xdist and pytest-timeout included).
set -u
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.6
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 || { tail -5 "$OUT/pip.log"; }
  export PYTHONPATH=/tmp/site:$PWD
else
  echo "no .whl/: grain, tensorflow-datasets, librosa, ... must already be installed"
  export PYTHONPATH=$PWD
fi
DATA=/tmp/tfds
SYNTH=600,2,2,20,30,25   # ~4.2 h of 20-30 s recordings: epochs long enough to time a GPU
RECIPE=configs/experiments/gpu_full_bf16.py
STEPS=${*:-speed pallas profile pipeline inference tests}
T0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader
python3 -c "import jax, flax, optax, grain, tensorflow_datasets, soundfile, librosa, ml_collections;\
print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" 2>&1 | tail -2
has() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

if has pipeline; then  # build the data on the CPU while the GPU works
  (timeout 300 python3 -m bench.pipeline_efficiency --config=$RECIPE --data_dir $DATA \
     --synthetic $SYNTH --build_only >"$OUT/build.log" 2>&1; echo "build rc $?" >>"$OUT/build.log") &
  BUILD=$!
fi
if has speed; then  # plain conv1, side by side with PyTorch (autocast bf16, cuDNN benchmark)
  timeout 90 python3 -m bench.train_speed --dtype bfloat16 --batch 32 --reps 10 --cases train \
    --no_breakdown --json "$OUT/train_speed_bf16_B32_plain.json" >"$OUT/speed_plain.log" 2>&1
  stamp "speed plain rc $?"; tail -12 "$OUT/speed_plain.log"
fi
if has pallas; then  # the fused Pallas conv1 block (compiles for the GPU here for the first time)
  timeout 60 python3 -m bench.train_speed --dtype bfloat16 --batch 32 --reps 10 --cases train \
    --no_breakdown --no_torch --conv1_impl pallas \
    --json "$OUT/train_speed_bf16_B32_pallas.json" >"$OUT/speed_pallas.log" 2>&1
  stamp "speed pallas rc $?"; tail -12 "$OUT/speed_pallas.log"
fi
if has profile; then
  timeout 40 python3 -m bench.kernel_profile --batch 32 --frames 1280 --dtype bfloat16 \
    --steps 10 --conv1_impl plain pallas --json "$OUT/kernel_profile_bf16_B32.json" \
    >"$OUT/profile.log" 2>&1
  stamp "profile rc $?"; grep -A12 "ms wall" "$OUT/profile.log" | head -30
fi
[ -n "${BUILD:-}" ] && { wait $BUILD; stamp "$(tail -1 "$OUT/build.log")"; }
if has pipeline; then  # the real reader (record by record, uncompressed), 12 threads
  timeout 160 python3 -m bench.pipeline_efficiency --config=$RECIPE --data_dir $DATA \
    --synthetic $SYNTH --epochs 2 --json "$OUT/pipeline_bfloat16.json" >"$OUT/pipeline.log" 2>&1
  stamp "pipeline rc $?"; tail -8 "$OUT/pipeline.log"  # ~122 s of it: the first compile
fi
if has inference; then  # the predict path on 3-minute files, 8 chunks per device call
  timeout 70 python3 -m bench.inference_speed --width 1.0 --quick --cases short,long --reps 3 \
    --json "$OUT/inference_speed.json" >"$OUT/inference.log" 2>&1
  stamp "inference rc $?"; tail -10 "$OUT/inference.log"
fi
if has tests; then
  # float32 semantics (TF32 off): tests compare programs with conftest.float_atol's accelerator
  # tolerance for JAX_DEFAULT_MATMUL_PRECISION=highest. -v: each result is logged as it lands,
  # so a run cut off by its time limit still names them. The `slow` tests run CPU subprocesses.
  XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest timeout 120 \
    python3 -m pytest -v -p no:cacheprovider -n 8 --timeout 120 --tb=short -rfE \
    -m "not slow" tests >"$OUT/tests.log" 2>&1
  stamp "tests rc $?"; grep -E "FAILED|ERROR|passed|failed" "$OUT/tests.log" | tail -30
fi
stamp "done"
