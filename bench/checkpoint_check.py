"""What the check of the newest checkpoint costs at each start of a search.

`model_dir.checkpoint_damage` reads every tensor of the checkpoint a search
resumes from. This writes a checkpoint the size of a paper search's (33M
parameters plus one momentum slot each, in 600 variables) and times the
check, cold (page cache dropped where allowed) and warm.

    python bench/checkpoint_check.py [--params=33000000] [--dir=/tmp/x]

Prints one JSON object.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  pylint: disable=g-import-not-at-top

from improve_nas import model_dir as model_dir_lib  # noqa: E402  pylint: disable=g-import-not-at-top


def _drop_page_cache() -> bool:
  try:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
      f.write("1")
    return True
  except OSError:
    return False


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--params", type=int, default=33_000_000)
  parser.add_argument("--variables", type=int, default=600)
  parser.add_argument("--dir", default=None)
  args = parser.parse_args()
  root = args.dir or tempfile.mkdtemp(prefix="ckpt_check_")
  size = args.params // args.variables
  rng = np.random.default_rng(0)
  variables = {}
  for i in range(args.variables):
    value = rng.standard_normal(size, dtype=np.float32)
    variables[f"v{i}"] = tf.Variable(value)
    variables[f"v{i}_momentum"] = tf.Variable(value)
  checkpoint = tf.train.Checkpoint(**variables)
  start = time.time()
  prefix = checkpoint.write(os.path.join(root, "model.ckpt-1"))
  write_seconds = time.time() - start
  data_bytes = sum(os.path.getsize(os.path.join(root, n))
                   for n in os.listdir(root) if ".data-" in n)
  cold = _drop_page_cache()
  start = time.time()
  damage = model_dir_lib.checkpoint_damage(prefix)
  first = time.time() - start
  start = time.time()
  model_dir_lib.checkpoint_damage(prefix)
  warm = time.time() - start
  if args.dir is None:
    shutil.rmtree(root)
  print(json.dumps({
      "params": args.params, "variables": 2 * args.variables,
      "checkpoint_mb": round(data_bytes / 2**20, 1),
      "write_seconds": round(write_seconds, 2),
      "check_seconds_first": round(first, 2),
      "first_read_was_cold": cold,
      "check_seconds_warm": round(warm, 2),
      "intact": damage is None}))


if __name__ == "__main__":
  main()
