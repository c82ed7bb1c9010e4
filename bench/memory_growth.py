"""Memory per iteration of a search against what each added member needs.

    .venv/bin/python bench/memory_growth.py [--iterations=5] [--steps=50] \
        [--config.FIELD=VALUE ...]

An AdaNet iteration's graphs hold every frozen member of the ensemble, so
each iteration legitimately needs more memory than the one before: the added
member's weights, its operations in the graph and session, and its
activations. This script measures both sides and prints one JSON object:

1. What one member needs: fresh processes each train one candidate tower
   next to K frozen members (inference mode; the config's architecture,
   image size and batch) in one plain TensorFlow graph with a checkpointing
   session, as an iteration does but without adanet; the slope of their peak
   resident memory over K = 0..N-1 is the memory one more member costs.
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
flags.DEFINE_integer("probe", -1, "Internal: train a candidate next to this "
                     "many frozen members, print the peak resident memory "
                     "and exit.")
flags.DEFINE_string("probe_shape", "", "Internal: arch,size,channels,batch,"
                    "classes of the probe.")


def _probe(members: int, shape: str) -> None:
  """Trains one candidate next to `members` frozen towers in one plain TF
  graph (no adanet), the way an iteration does, and prints its peak."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.arch import ArchSpec  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.tower import NasnetTower  # pylint: disable=g-import-not-at-top
  arch, size, channels, batch, classes = shape.split(",")
  size, channels, batch, classes = map(int, (size, channels, batch, classes))
  arch = ArchSpec.parse(arch)
  sampler = MemorySampler()
  sampler.start()
  with tf.Graph().as_default(), tempfile.TemporaryDirectory() as ckpt_dir:
    images = tf.random.uniform([batch, size, size, channels], seed=1)
    labels = tf.random.uniform([batch], maxval=classes, dtype=tf.int32,
                               seed=2)
    frozen = [NasnetTower(arch, classes, use_aux_head=False,
                          name=f"frozen_{i}", seed=i)(
                              images, training=False)["logits"]
              for i in range(members)]
    candidate = NasnetTower(arch, classes, use_aux_head=False,
                            name="candidate", seed=members)
    logits = candidate(images, training=True)["logits"]
    ensemble = tf.add_n([tf.stop_gradient(f) for f in frozen] + [logits])
    loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, ensemble)
    step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.train.MomentumOptimizer(0.01, 0.9).minimize(
        loss, global_step=step, var_list=candidate.trainable_weights)
    with tf.compat.v1.train.MonitoredTrainingSession(
        checkpoint_dir=ckpt_dir, save_summaries_steps=None,
        log_step_count_steps=None) as sess:
      for _ in range(20):
        sess.run(train_op)
  sampler.stop()
  print(json.dumps({"members": members,
                    "peak_rss_mb": round(sampler.take_peak() / MB, 1)}))


def _member_need(shape: str, most: int):
  """Peak resident memory with K = 0..most-1 frozen members, each in a fresh
  process, and its least-squares slope in MB per member."""
  peaks = []
  for k in range(most):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--probe={k}",
         f"--probe_shape={shape}"], check=True, capture_output=True,
        text=True).stdout
    peaks.append(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])
  slope = float(np.polyfit(np.arange(most), peaks, 1)[0])
  return peaks, slope


def main(argv):
  del argv
  f = flags.FLAGS
  if f.probe >= 0:
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
