"""Throughput of the training input pipeline, alone and against a training step.

    .venv/bin/python bench/input_pipeline.py [--train_examples=50000]
        [--archs=1@24,1@96,6@768] [--batch_size=32]

Builds two CIFAR-10-shaped datasets of random images in a temporary
directory: the official binary layout (`cifar-10-batches-bin`, read by
improve_nas/data/cifar_binary.py) and a real prepared TFDS dataset (PNG
encoded, as TFDS stores cifar10). For each it runs the training pipeline of
improve_nas/data/input.py (shuffle, pad + crop, flip, Cutout 16, batch,
prefetch) and reports examples/second and the CPU seconds it spends per
batch. Then, for each architecture, it times one training step of the
tower (forward, backward, SGD) on a fixed batch and on batches drawn from the
pipeline, so the share of a step the pipeline costs and whether it slows the
step down are measured, not guessed. Prints one JSON object.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from improve_nas.verbosity import set_tf_verbosity

set_tf_verbosity(False)

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

from improve_nas.data import cifar_binary  # pylint: disable=g-import-not-at-top
from improve_nas.data import datasets
from improve_nas.data.input import PipelineConfig, make_input_fn
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.tower import NasnetTower


def write_binary(root: str, train_examples: int) -> None:
  variant = cifar_binary.VARIANTS["cifar10"]
  folder = os.path.join(root, variant.folder)
  os.makedirs(folder)
  rng = np.random.RandomState(0)
  per_file = {"train": train_examples // 5, "test": 1000}
  for split, files in variant.files.items():
    for name in files:
      n = per_file[split]
      data = rng.randint(0, 256, (n, variant.record_bytes)).astype(np.uint8)
      data[:, 0] %= 10
      data.tofile(os.path.join(folder, name))


class RandomCifar(tfds.core.GeneratorBasedBuilder):
  """Random 32x32x3 images stored the way TFDS stores cifar10 (PNG)."""

  VERSION = tfds.core.Version("1.0.0")
  EXAMPLES = 10_000

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(32, 32, 3)),
            "label": tfds.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(self.EXAMPLES)}

  def _generate_examples(self, n):
    rng = np.random.RandomState(1)
    for i in range(n):
      yield i, {"image": rng.randint(0, 256, (32, 32, 3)).astype(np.uint8),
                "label": int(rng.randint(10))}


def pipeline_rate(source, batch_size: int, batches: int) -> dict:
  fn = make_input_fn(source, PipelineConfig(
      split="train", image_size=32, batch_size=batch_size, training=True,
      cutout_size=16, seed=0))
  iterator = iter(fn())
  for _ in range(20):  # warm-up: fill the shuffle buffer, start threads
    next(iterator)
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(iterator)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  return {"examples_per_second": round(batches * batch_size / wall),
          "cpu_ms_per_batch": round(1000 * cpu / batches, 2),
          "wall_ms_per_batch": round(1000 * wall / batches, 2)}


def step_times(arch: str, source, batch_size: int, steps: int) -> dict:
  tower = NasnetTower(ArchSpec.parse(arch), 10, use_aux_head=True)
  optimizer = tf.keras.optimizers.SGD(0.025, momentum=0.9)

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      out = tower(images, training=True, progress=0.5)
      loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
          labels, out["logits"], from_logits=True))
    grads = tape.gradient(loss, tower.trainable_variables)
    optimizer.apply_gradients(zip(grads, tower.trainable_variables))
    return loss

  fn = make_input_fn(source, PipelineConfig(
      split="train", image_size=32, batch_size=batch_size, training=True,
      cutout_size=16, seed=0))
  iterator = iter(fn())
  fixed = next(iterator)
  fixed = (fixed[0]["image"], fixed[1])
  for _ in range(2):
    step(*fixed).numpy()

  def timed(get_batch):
    start = time.perf_counter()
    for _ in range(steps):
      step(*get_batch()).numpy()
    return (time.perf_counter() - start) / steps

  def from_pipeline():
    features, labels = next(iterator)
    return features["image"], labels

  # Interleave the two ways of feeding so drift hits both alike.
  fixed_t, fed_t = [], []
  for _ in range(3):
    fixed_t.append(timed(lambda: fixed))
    fed_t.append(timed(from_pipeline))
  fixed_s, fed_s = min(fixed_t), min(fed_t)
  return {"arch": arch, "step_ms_fixed_batch": round(1000 * fixed_s, 1),
          "step_ms_from_pipeline": round(1000 * fed_s, 1),
          "slowdown": round(fed_s / fixed_s, 3)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--train_examples", type=int, default=50_000)
  parser.add_argument("--archs", default="1@24,1@96,6@768")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--batches", type=int, default=300)
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()
  tfds.disable_progress_bar()
  result = {"benchmark": "input_pipeline", "cpu_count": os.cpu_count(),
            "batch_size": args.batch_size, "image_size": 32,
            "augmentation": "pad 4 + crop 32, flip, cutout 16"}
  with tempfile.TemporaryDirectory() as root:
    write_binary(root, args.train_examples)
    binary = datasets.load_source("cifar10", root)
    builder = RandomCifar(data_dir=os.path.join(root, "tfds"))
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout pure JSON
      builder.download_and_prepare()
    png = datasets.TfdsSource(builder)
    result["pipeline"] = {
        "cifar_binary": pipeline_rate(binary, args.batch_size, args.batches),
        "tfds_png": pipeline_rate(png, args.batch_size, args.batches)}
    steps = [step_times(a, binary, args.batch_size, args.steps)
             for a in args.archs.split(",")]
  for s in steps:
    for name, rate in result["pipeline"].items():
      s[f"pipeline_cpu_share_{name}"] = round(
          rate["cpu_ms_per_batch"] / s["step_ms_fixed_batch"], 4)
  result["training_step"] = steps
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
