#!/usr/bin/env bash
# One prepared GPU session (the `device` tool's H100/H200): train-step bench vs PyTorch, the full
# training loop with the real input pipeline vs the bare step, and the GPU-relevant tests.
#
#   bash bench/device_run.sh [STEP ...]   STEPS: speed pipeline tests (default), pipeline_fp32,
#                                         inference; results land in $OUT (or ./device_out)
#
# The machine has jax/flax/optax/torch but no registry: the other packages travel as cp312 wheels
# in .whl/ (see bench/README.md, "GPU runs"). Each step has its own time limit so that one slow
# step cannot eat the others' time.
set -u
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.6
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 || { tail -5 "$OUT/pip.log"; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
DATA=/tmp/tfds
SYNTH=600,2,2,20,30,25   # ~4.2 h of 20-30 s recordings: epochs long enough to time a GPU
STEPS=${*:-speed pipeline tests}
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader
python3 -c "import jax, flax, optax, grain, tensorflow_datasets, soundfile, librosa, ml_collections;\
print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" 2>&1 | tail -2
has() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }

if has pipeline || has pipeline_fp32; then  # build the data on the CPU while the GPU works
  (timeout 300 python3 bench/pipeline_efficiency.py --variant full --data_dir $DATA \
     --synthetic $SYNTH --build_only >"$OUT/build.log" 2>&1; echo "build rc $?" >>"$OUT/build.log") &
  BUILD=$!
fi
if has speed; then
  timeout 200 python3 bench/train_speed.py --dtype bfloat16 --batch 32 --reps 20 \
    --json "$OUT/train_speed_bf16_B32.json" >"$OUT/train_speed_bf16.log" 2>&1
  echo "train_speed rc $?"; tail -25 "$OUT/train_speed_bf16.log"
fi
if has tests; then  # float32 semantics: TF32 off, so tolerances mean what they mean on the CPU
  # -v: each result is logged as it lands, so a run cut off by its time limit still names them
  XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest timeout 300 \
    python3 -m pytest -v -p no:cacheprovider -n 4 --timeout 150 --tb=short -rfE \
    tests/test_geometry.py tests/test_models.py tests/test_features.py tests/test_conv.py \
    tests/test_predict.py tests/test_export.py tests/test_input_pipeline.py \
    tests/test_evaluate.py tests/test_datasets.py >"$OUT/tests.log" 2>&1
  echo "tests rc $?"; grep -E "FAILED|ERROR|passed|failed" "$OUT/tests.log" | tail -25
fi
[ -n "${BUILD:-}" ] && { wait $BUILD; tail -2 "$OUT/build.log"; }
for dtype in bfloat16 float32; do
  if { [ $dtype = bfloat16 ] && has pipeline; } || { [ $dtype = float32 ] && has pipeline_fp32; }; then
    timeout 170 python3 bench/pipeline_efficiency.py --variant full --data_dir $DATA \
      --synthetic $SYNTH --epochs 4 --set model.dtype=$dtype input.num_threads=12 \
      input.prefetch=4 --json "$OUT/pipeline_$dtype.json" >"$OUT/pipeline_$dtype.log" 2>&1
    echo "pipeline $dtype rc $?"; tail -8 "$OUT/pipeline_$dtype.log"
  fi
done
if has inference; then
  timeout 120 python3 bench/inference_speed.py --width 1.0 --quick --cases short,long \
    --json "$OUT/inference_speed.json" >"$OUT/inference.log" 2>&1
  echo "inference rc $?"; tail -12 "$OUT/inference.log"
fi
