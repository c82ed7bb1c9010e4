"""Training steps per second of a search on 1, 2 and 3 trainers.

    .venv/bin/python bench/cluster_throughput.py [--trainers=1,2,3] \
        [--steps=60] [--placement=replication]

For each count, `improve-nas-cluster` runs a one-iteration search of tiny
towers (1@24 on 8x8 digits, batch 8) with one parameter server and that
many trainers (the chief plus count-1 workers) on localhost, in a fresh
model_dir. Reported per count: the global steps per second of the
iteration as the search record has it (steps over the wall time of the
chief's training call, graph building included) and the command's wall
time. On a 2-core machine there is no speed-up to expect: every process
shares the same two cores. Prints one JSON object.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

flags.DEFINE_list("trainers", ["1", "2", "3"], "Trainer counts to measure.")
flags.DEFINE_integer("steps", 60, "Training steps of the iteration.")
flags.DEFINE_enum("placement", "replication", ["replication", "round_robin"],
                  "Placement of the candidates.")


def _run(trainers: int, steps: int, placement: str, model_dir: str):
  command = [sys.executable, "-m", "trainer.cluster",
             f"--workers={trainers - 1}", "--ps=1", f"--placement={placement}",
             "--", "--config.initial_arch=1@24", "--config.width_increment=24",
             "--config.batch_size=8", "--config.eval_steps=1",
             "--config.selection_steps=1", "--config.shuffle_buffer=256",
             "--config.use_aux_head=False", "--config.max_iterations=1",
             f"--config.steps_per_iteration={steps}", "--noexport",
             "--progress_secs=0", f"--model_dir={model_dir}"]
  start = time.time()
  subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                 timeout=1800)
  seconds = time.time() - start
  with open(os.path.join(model_dir, "search.json")) as f:
    record = json.load(f)["iterations"][0]
  return {"trainers": trainers, "steps_per_second": record["steps_per_second"],
          "train_seconds": record["train_seconds"],
          "command_seconds": round(seconds, 1)}


def main(argv):
  del argv
  f = flags.FLAGS
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for n in map(int, f.trainers):
      results.append(_run(n, f.steps, f.placement,
                          os.path.join(tmp, f"run{n}")))
  print(json.dumps({"benchmark": "cluster_throughput",
                    "cpu_count": os.cpu_count(), "placement": f.placement,
                    "steps": f.steps, "parameter_servers": 1,
                    "results": results}))


if __name__ == "__main__":
  app.run(main)
