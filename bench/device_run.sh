#!/usr/bin/env bash
# One prepared GPU session (the `device` tool's H100/H200): train-step bench vs PyTorch, the full
# training loop with the real input pipeline vs the bare step, and the GPU-relevant tests.
#
#   bash bench/device_run.sh [part]   part: 1 (default: speed, pipeline bf16, tests) | 2 (fp32
#                                     pipeline, inference) ; results land in $OUT (or ./device_out)
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
SYNTH=800,2,2,20,30,25   # ~5.6 h of 20-30 s recordings: epochs long enough to time a GPU
part=${1:-1}
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader
python3 -c "import jax, flax, optax, grain, tensorflow_datasets, soundfile, librosa, ml_collections;\
print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" 2>&1 | tail -2

if [ "$part" = 1 ]; then
  # Build the data on the CPU while the GPU times the bare steps.
  (timeout 300 python3 bench/pipeline_efficiency.py --variant full --data_dir $DATA \
     --synthetic $SYNTH --build_only >"$OUT/build.log" 2>&1; echo "build rc $?" >>"$OUT/build.log") &
  BUILD=$!
  timeout 200 python3 bench/train_speed.py --dtype bfloat16 --batch 32 --reps 20 \
    --json "$OUT/train_speed_bf16_B32.json" >"$OUT/train_speed_bf16.log" 2>&1
  echo "train_speed rc $?"; tail -25 "$OUT/train_speed_bf16.log"
  wait $BUILD; tail -2 "$OUT/build.log"
  timeout 170 python3 bench/pipeline_efficiency.py --variant full --data_dir $DATA \
    --synthetic $SYNTH --epochs 3 --set model.dtype=bfloat16 input.num_threads=12 \
    input.prefetch=4 --json "$OUT/pipeline_bf16.json" >"$OUT/pipeline_bf16.log" 2>&1
  echo "pipeline bf16 rc $?"; tail -8 "$OUT/pipeline_bf16.log"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rfE tests/test_geometry.py \
    tests/test_models.py tests/test_features.py tests/test_conv.py tests/test_predict.py \
    tests/test_export.py tests/test_input_pipeline.py tests/test_evaluate.py >"$OUT/tests.log" 2>&1
  echo "tests rc $?"; tail -15 "$OUT/tests.log"
else
  [ -d $DATA ] || timeout 200 python3 bench/pipeline_efficiency.py --variant full --data_dir $DATA \
     --synthetic $SYNTH --build_only >"$OUT/build.log" 2>&1
  timeout 170 python3 bench/pipeline_efficiency.py --variant full --data_dir $DATA \
    --synthetic $SYNTH --epochs 3 --set input.num_threads=12 input.prefetch=4 \
    --json "$OUT/pipeline_fp32.json" >"$OUT/pipeline_fp32.log" 2>&1
  echo "pipeline fp32 rc $?"; tail -8 "$OUT/pipeline_fp32.log"
  timeout 120 python3 bench/inference_speed.py --width 1.0 --quick --cases short,long \
    --json "$OUT/inference_speed.json" >"$OUT/inference.log" 2>&1
  echo "inference rc $?"; tail -12 "$OUT/inference.log"
fi
