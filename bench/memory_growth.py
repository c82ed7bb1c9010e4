"""Memory per iteration of a search against what each added member needs.

    .venv/bin/python bench/memory_growth.py [--iterations=5] [--steps=50] \
        [--config.FIELD=VALUE ...]

An AdaNet iteration's graphs hold every frozen member of the ensemble, so
each iteration legitimately needs more memory than the one before: the added
member's weights, its operations in the graph and session, and its
activations. This script measures both sides and prints one JSON object:

1. What one member needs: fresh processes each build K frozen members
   (inference mode, the config's architecture, image size and batch) in one
   graph and run them in a session; the slope of their peak resident memory
   over K = 1..N is the memory one more member costs.
2. What the search uses: the demo config with a constant generator (so every
   iteration adds the same member) for N iterations; resident memory sampled
   every 50 ms, the peak of each iteration, and its growth against the
   previous iteration.

`growth_over_need` per iteration is peak growth / member need; near 1 (or
below) means the search keeps nothing beyond what the ensemble needs.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

import improve_nas
from improve_nas import search

import psutil  # pylint: disable=g-bad-import-order
from rss_sampler import MB, MemorySampler  # pylint: disable=g-bad-import-order

config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Base config (the generator is set to "
    "constant, the first architecture repeated).")
flags.DEFINE_integer("iterations", 5, "Iterations of the search, and the "
                     "largest number of members probed.")
flags.DEFINE_integer("steps", 50, "Training steps per iteration.")
flags.DEFINE_integer("probe", 0, "Internal: build this many members, run "
                     "them, print the peak resident memory and exit.")
flags.DEFINE_string("probe_shape", "", "Internal: arch,size,channels,batch,"
                    "classes of the probe.")


def _probe(members: int, shape: str) -> None:
  """Builds `members` frozen towers in one graph, runs them, prints JSON."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.arch import ArchSpec  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.tower import NasnetTower  # pylint: disable=g-import-not-at-top
  arch, size, channels, batch, classes = shape.split(",")
  size, channels, batch, classes = map(int, (size, channels, batch, classes))
  sampler = MemorySampler()
  sampler.start()
  with tf.Graph().as_default():
    images = tf.random.uniform([batch, size, size, channels], seed=1)
    logits = [NasnetTower(ArchSpec.parse(arch), classes, use_aux_head=False,
                          name=f"member_{i}", seed=i)(
                              images, training=False)["logits"]
              for i in range(members)]
    total = tf.add_n(logits)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for _ in range(20):
        sess.run(total)
  sampler.stop()
  print(json.dumps({"members": members,
                    "peak_rss_mb": round(sampler.take_peak() / MB, 1)}))


def _member_need(shape: str, most: int):
  """Peak resident memory of K = 1..most members, each in a fresh process,
  and its least-squares slope in MB per member."""
  peaks = []
  for k in range(1, most + 1):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--probe={k}",
         f"--probe_shape={shape}"], check=True, capture_output=True,
        text=True).stdout
    peaks.append(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])
  slope = float(np.polyfit(np.arange(1, most + 1), peaks, 1)[0])
  return peaks, slope


def main(argv):
  del argv
  f = flags.FLAGS
  if f.probe:
    _probe(f.probe, f.probe_shape)
    return
  improve_nas.compat.set_tf_verbosity(False)
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  from improve_nas.data import datasets  # pylint: disable=g-import-not-at-top
  from improve_nas.estimator import resolve_image_size  # pylint: disable=g-import-not-at-top

  c = f.config
  c.generator = "constant"
  c.max_iterations = f.iterations
  c.steps_per_iteration = f.steps
  info = datasets.load_source(c.dataset, c.data_dir or None).info
  shape = (f"{c.initial_arch},{resolve_image_size(c, info)},"
           f"{info.image_shape[-1]},{c.batch_size},{info.num_classes}")
  probe_peaks, need = _member_need(shape, f.iterations)

  sampler = MemorySampler()
  peaks = []
  sampler.start()
  with tempfile.TemporaryDirectory() as model_dir:
    start = time.time()
    result = search.run_search(
        c, os.path.join(model_dir, "run"),
        on_iteration=lambda r: peaks.append(sampler.take_peak() / MB))
    seconds = time.time() - start
  sampler.stop()
  growth = [b - a for a, b in zip(peaks, peaks[1:])]
  print(json.dumps({
      "benchmark": "memory_growth",
      "cpu_count": os.cpu_count(),
      "member": c.initial_arch,
      "image_size_channels_batch": shape.split(",")[1:4],
      "iterations": len(result.records),
      "steps_per_iteration": c.steps_per_iteration,
      "search_seconds": round(seconds, 1),
      "member_need_mb": round(need, 1),
      "probe_peak_rss_mb_by_members": probe_peaks,
      "search_peak_rss_mb_by_iteration": [round(p, 1) for p in peaks],
      "peak_growth_mb": [round(g, 1) for g in growth],
      "growth_over_need": [round(g / need, 2) for g in growth],
      "mean_growth_over_need": round(float(np.mean(growth)) / need, 2)
                               if growth else None,
      "rss_after_search_mb": round(psutil.Process().memory_info().rss / MB, 1),
  }))


if __name__ == "__main__":
  app.run(main)
