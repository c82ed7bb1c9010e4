"""Would a JAX backend train NASNet-A faster than the TensorFlow one here?

    .venv-keras/bin/python bench/keras_backends.py [--arch=1@96] \
        [--image_sizes=8,32] [--batch_size=32] [--steps=40] \
        [--jax_python=.venv-jax/bin/python]

The Keras engine's tower is written with TensorFlow ops, so it cannot run
on JAX as it is. This benchmark answers the question before anyone ports
it: it builds a NASNet-A-shaped network from Keras 3's own layers, which
run on every backend, and trains it with `fit` (momentum, cross entropy)
on random images, once per backend and image size, each in a process of
its own (the backend is fixed when Keras is imported):

- the cells are the tower's own tables (improve_nas/nasnet/arch.py): a
  separable op is twice ReLU, separable convolution, batch norm; pooling
  and identity as in the tables; each state is first brought to the cell's
  filters by a 1x1 convolution and batch norm; the cell outputs the
  concatenation of the unused states;
- simplified: a normal cell right after a reduction reads the reduction's
  output as both of its inputs (the real tower brings the older one down
  with a factorized reduction), and there is no drop path or auxiliary head.

TensorFlow runs with the Keras engine's runtime settings
(keras_engine/runtime.py) and without XLA, as the engine does; JAX compiles
every step with XLA, its only way. Reports for each leg the seconds of the
first `fit` call (tracing or compiling, and 2 steps) and the examples per
second of the timed steps. Prints one JSON object.

A JAX environment is not part of the project's locks. To make one:
    python3.12 -m venv .venv-jax
    .venv-jax/bin/pip install "jax[cpu]==0.12.0.1" keras==3.15.1
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _nasnet_like(arch_text, image_size, num_classes=10):
  """The Keras-layers network described above, as a keras.Model."""
  import keras  # pylint: disable=g-import-not-at-top
  from keras import layers  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.arch import (ArchSpec, NORMAL_CELL,  # pylint: disable=g-import-not-at-top
                                       REDUCTION_CELL)

  def conv_bn(x, filters):
    x = layers.Conv2D(filters, 1, use_bias=False)(layers.ReLU()(x))
    return layers.BatchNormalization()(x)

  def apply(op, x, filters, strides):
    if op.startswith("sep"):
      k = int(op[3:])
      for i in range(2):
        x = layers.ReLU()(x)
        x = layers.SeparableConv2D(filters, k, strides=strides if i == 0
                                   else 1, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
      return x
    if op == "avg3":
      return layers.AveragePooling2D(3, strides, padding="same")(x)
    if op == "max3":
      return layers.MaxPooling2D(3, strides, padding="same")(x)
    assert op == "id" and strides == 1, op
    return x

  def cell(spec, previous, older, filters, strides):
    states = [conv_bn(previous, filters), conv_bn(older, filters)]
    for left, i, right, j in spec.blocks:
      states.append(layers.Add()([
          apply(left, states[i], filters, strides if i < 2 else 1),
          apply(right, states[j], filters, strides if j < 2 else 1)]))
    return layers.Concatenate()([states[k] for k in spec.outputs])

  arch = ArchSpec.parse(arch_text)
  images = keras.Input((image_size, image_size, 3))
  x = layers.Conv2D(3 * arch.conv_filters, 3, padding="same",
                    use_bias=False)(images)
  previous = older = layers.BatchNormalization()(x)
  for stack in range(3):
    filters = arch.conv_filters * 2 ** stack
    if stack:
      previous = older = cell(REDUCTION_CELL, previous, older, filters, 2)
    for _ in range(arch.cells_per_stack):
      previous, older = cell(NORMAL_CELL, previous, older, filters, 1), \
          previous
  x = layers.GlobalAveragePooling2D()(layers.ReLU()(previous))
  return keras.Model(images, layers.Dense(num_classes)(x))


def child(args):
  """One leg, in this process: prints its JSON line."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  backend = keras.backend.backend()
  if backend == "tensorflow":
    from improve_nas.keras_engine import runtime  # pylint: disable=g-import-not-at-top
    runtime.configure()
  keras.utils.set_random_seed(1)
  model = _nasnet_like(args.arch, args.image_size)
  model.compile(
      optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      jit_compile=backend == "jax")
  n = args.batch_size * args.steps
  rng = np.random.RandomState(0)
  images = rng.rand(n, args.image_size, args.image_size, 3).astype("float32")
  labels = rng.randint(0, 10, n)
  start = time.perf_counter()
  model.fit(images[:2 * args.batch_size], labels[:2 * args.batch_size],
            batch_size=args.batch_size, epochs=1, verbose=0)
  first = time.perf_counter() - start
  start = time.perf_counter()
  model.fit(images, labels, batch_size=args.batch_size, epochs=1, verbose=0)
  seconds = time.perf_counter() - start
  print(json.dumps({"backend": backend, "image_size": args.image_size,
                    "params": model.count_params(),
                    "first_call_seconds": round(first, 2),
                    "examples_per_second": round(n / seconds, 1)}))


def _leg(python, backend, image_size, args):
  env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=ROOT)
  proc = subprocess.run(
      [python, os.path.abspath(__file__), "--child", f"--arch={args.arch}",
       f"--image_sizes={image_size}", f"--batch_size={args.batch_size}",
       f"--steps={args.steps}"], capture_output=True, text=True, env=env,
      check=False)
  if proc.returncode:
    return {"backend": backend, "image_size": image_size,
            "error": proc.stderr.strip().splitlines()[-1:]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", default="1@96")
  parser.add_argument("--image_sizes", default="8,32")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--jax_python",
                      default=os.path.join(ROOT, ".venv-jax", "bin", "python"))
  parser.add_argument("--child", action="store_true")
  args = parser.parse_args()
  if args.child:  # one leg: --image_sizes holds its one size
    args.image_size = int(args.image_sizes)
    child(args)
    return
  pythons = {"tensorflow": sys.executable, "jax": args.jax_python}
  legs = []
  for size in [int(s) for s in args.image_sizes.split(",")]:
    for backend, python in pythons.items():
      if not os.path.exists(python):
        legs.append({"backend": backend, "image_size": size,
                     "error": f"no interpreter at {python}"})
        continue
      legs.append(_leg(python, backend, size, args))
  ratios = {}
  for size in {leg["image_size"] for leg in legs}:
    rate = {leg["backend"]: leg.get("examples_per_second") for leg in legs
            if leg["image_size"] == size}
    if rate.get("jax") and rate.get("tensorflow"):
      ratios[str(size)] = round(rate["jax"] / rate["tensorflow"], 3)
  print(json.dumps({"benchmark": "keras_backends", "arch": args.arch,
                    "batch_size": args.batch_size, "steps": args.steps,
                    "cpu_count": os.cpu_count(), "legs": legs,
                    "jax_over_tensorflow_examples_per_second": ratios}))


if __name__ == "__main__":
  main()
