"""Training steps per second of one Keras-engine candidate under
TensorFlow's default threads and under the engine's (keras_engine/runtime.py:
one thread per operation, as many operations at once as cores, no
Grappler).

    .venv-keras/bin/python bench/keras_threads.py [--arch=1@96] [--steps=200]

Each setting runs in its own process (threads are fixed once TensorFlow has
run an operation): the demo config's candidate (8x8 digits, batch 32, its
loss, momentum and clipping), and the same tower at 32x32. Also reports
the operations in the traced step and the seconds of its first call (the
trace and one step). Prints JSON.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = """
import json, sys, time
import improve_nas
from improve_nas.keras_engine import runtime
if sys.argv[1] == "engine":
  runtime.configure()
import tensorflow as tf
from improve_nas import config as config_lib
from improve_nas.configs import demo
from improve_nas.dataset_facts import DatasetFacts
from improve_nas.keras_engine.training import IterationTrainer
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.proposals import Candidate
c = demo.get_config()
c.image_size = int(sys.argv[3])
c = config_lib.prepared(c)
facts = DatasetFacts.load(c)
trainer = IterationTrainer(
    c, facts, 0, [], [Candidate(ArchSpec.parse(sys.argv[2]), "constant", 0)],
    tf.Variable(0, dtype=tf.int64))
images = tf.random.uniform([c.batch_size, c.image_size, c.image_size, 1])
labels = tf.random.uniform([c.batch_size], 0, 10, tf.int32)
start = time.time()
float(trainer.train_step(images, labels)["terms"][0]["total"])
first = time.time() - start
ops = len(trainer.train_step.get_concrete_function(
    images, labels).graph.get_operations())
for _ in range(10):
  out = trainer.train_step(images, labels)
steps = int(sys.argv[4])
start = time.time()
for _ in range(steps):
  out = trainer.train_step(images, labels)
float(out["terms"][0]["total"])
print(json.dumps({"steps_per_second": round(steps / (time.time() - start), 2),
                  "first_step_seconds": round(first, 2), "ops": ops}))
"""


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--arch", default="1@96")
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args()
  results = []
  for size in (8, 32):
    row = {"arch": args.arch, "image_size": size, "batch_size": 32}
    for setting in ("default", "engine"):
      proc = subprocess.run(
          [sys.executable, "-c", _CHILD, setting, args.arch, str(size),
           str(args.steps)], capture_output=True, text=True, cwd=ROOT,
          env=dict(os.environ, PYTHONPATH=ROOT))
      if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
      child = json.loads(proc.stdout.strip().splitlines()[-1])
      row[setting] = child["steps_per_second"]
      # The traced step (the same under both settings) and its first call.
      row["ops_per_step"] = child["ops"]
      row[f"{setting}_first_step_seconds"] = child["first_step_seconds"]
    row["speedup"] = round(row["engine"] / row["default"], 2)
    results.append(row)
  print(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
  main()
