#!/usr/bin/env bash
# The GPU check of --distribution=mirrored, for a machine with NVIDIA GPUs
# and the [gpu] install (README "Installing"):
#
#     bench/gpu_mirrored.sh [PYTHON]      # default .venv/bin/python
#
# 1. the demo search (2 iterations) with and without --distribution=mirrored,
#    end to end, each reporting training examples/second per iteration
#    (adanet's bookkeeping included) and its test accuracy;
# 2. bench/mirrored_throughput.py on one device against mirrored over every
#    visible GPU (the median step, no bookkeeping).
# Prints one JSON object per part. About 10 minutes on one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=2
if ! "$PY" -c 'import sys, tensorflow as tf; sys.exit(not tf.config.list_physical_devices("GPU"))'; then
  echo "gpu_mirrored.sh: TensorFlow in $PY sees no GPU; install the [gpu] extra on a machine where nvidia-smi works" >&2
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for distribution in none mirrored; do
  "$PY" -m trainer.main --config=demo \
    --config.max_iterations=2 --distribution=$distribution --noexport \
    --progress_secs=0 --model_dir="$tmp/$distribution" > "$tmp/$distribution.log" 2>&1 ||
    { tail -20 "$tmp/$distribution.log" >&2; exit 1; }
done
"$PY" - "$tmp" <<'PY'
import json, sys
from improve_nas import records
from improve_nas.configs import demo
batch = demo.get_config().batch_size
print(json.dumps({"benchmark": "gpu_mirrored_search", "global_batch": batch,
                  "runs": {d: [{"iteration": r.iteration,
                                "examples_per_second": round(r.steps_per_second * batch, 1),
                                "test_accuracy": round(r.test_accuracy, 4)}
                               for r in records.load_records(f"{sys.argv[1]}/{d}")]
                           for d in ("none", "mirrored")}}))
PY
"$PY" bench/mirrored_throughput.py --devices=0,gpus --arch=2@96 --batch_size=128 --steps=200
