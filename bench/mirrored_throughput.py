"""Training examples per second on 1 device and mirrored over 2 logical CPU
devices (`--distribution=mirrored --cpu_devices=2`), or over the GPUs.

    .venv/bin/python bench/mirrored_throughput.py [--devices=0,2] \
        [--steps=120] [--arch=1@48] [--batch_size=32]
    .venv/bin/python bench/mirrored_throughput.py --devices=0,gpus   # GPUs

Each entry of --devices is 0 (one device, no strategy: TensorFlow's
default placement, the first GPU where there is one), N (mirrored over N
logical CPU devices) or `gpus` (mirrored over every visible GPU). For each,
a child process runs a one-iteration search of one constant tower on the
demo's 8x8 digits (the logical devices must be set before TensorFlow
starts), with a hook that clocks every training step. Reported per entry:
the replicas' devices, the median step time after 10 warm-up steps, and
examples per second at the global batch. On a 2-core CPU both replicas
share the same cores, so no speed-up is expected; the figure is the price
of the replication. Prints one JSON object.
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

flags.DEFINE_list("devices", ["0", "2"], "Logical CPU device counts (0: one "
                  "device without a strategy), or gpus: every visible GPU.")
flags.DEFINE_integer("steps", 120, "Training steps.")
flags.DEFINE_string("arch", "1@48", "The tower.")
flags.DEFINE_integer("batch_size", 32, "The global batch.")
flags.DEFINE_string("child", "", "Internal: measure this --devices entry.")
flags.DEFINE_string("out", "", "Internal: the child's JSON output.")
FLAGS = flags.FLAGS


def _child():
  from step_clock import clock_hook, quiet, step_seconds  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas import mirrored  # pylint: disable=g-import-not-at-top
  from improve_nas import search  # pylint: disable=g-import-not-at-top
  from improve_nas.configs.demo import get_config  # pylint: disable=g-import-not-at-top
  quiet()
  run_config, devices = None, ["default"]
  if FLAGS.child != "0":
    strategy = mirrored.strategy(
        0 if FLAGS.child == "gpus" else int(FLAGS.child))
    run_config = tf.estimator.RunConfig(train_distribute=strategy)
    devices = list(strategy.extended.worker_devices)
  c = get_config()
  c.generator, c.initial_arch = "constant", FLAGS.arch
  c.max_iterations, c.steps_per_iteration = 1, FLAGS.steps
  c.batch_size = FLAGS.batch_size
  segments = []
  with tempfile.TemporaryDirectory() as tmp:
    search.run_search(c, os.path.join(tmp, "run"), run_config=run_config,
                      hooks=[clock_hook(segments)])
  segment = max(segments, key=len)
  seconds = step_seconds(segment)
  with open(FLAGS.out, "w") as f:
    json.dump({"devices": devices,
               "gpus_visible": len(tf.config.list_physical_devices("GPU")),
               "steps": len(segment),
               "step_seconds": round(seconds, 5),
               "examples_per_second": round(FLAGS.batch_size / seconds, 1)},
              f)


def main(argv):
  del argv
  if FLAGS.child:
    _child()
    return
  for entry in FLAGS.devices:
    if not (entry.isdigit() or entry == "gpus"):
      raise app.UsageError(f"--devices: {entry!r} is neither a device count "
                           "nor gpus")
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for count in FLAGS.devices:
      out = os.path.join(tmp, f"{count}.json")
      subprocess.run(
          [sys.executable, os.path.abspath(__file__), f"--child={count}",
           f"--out={out}", f"--steps={FLAGS.steps}", f"--arch={FLAGS.arch}",
           f"--batch_size={FLAGS.batch_size}"],
          check=True, cwd=ROOT,
          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
      with open(out) as f:
        results.append(json.load(f))
  single = results[0]["examples_per_second"]
  for r in results:
    r["over_one_device"] = round(r["examples_per_second"] / single, 3)
  print(json.dumps({"benchmark": "mirrored_throughput",
                    "cpu_count": os.cpu_count(), "arch": FLAGS.arch,
                    "global_batch": FLAGS.batch_size, "runs": results}))


if __name__ == "__main__":
  app.run(main)
