"""One candidate's training throughput: adanet against plain Keras.

    .venv/bin/python bench/candidate_throughput.py [--arch=1@96] \
        [--image_size=32] [--batch_size=32] [--steps=30] [--warmup=5] \
        [--repetitions=3]

Trains the same NASNet-A tower (--arch, on the embedded digits resized to
--image_size, batch --batch_size) two ways in one process, alternating
repetitions so that both see the same machine state:

- adanet: the first iteration of a constant-generator search, as
  `improve-nas` runs it (learned mixture weights, the candidate's own loss
  and optimizer, adanet's bookkeeping, summaries); each repetition is one
  `estimator.train` call resuming from the previous one's checkpoint;
- keras: `model.fit` of the same tower with the same loss terms (label
  smoothing, auxiliary head, weight decay), momentum with the same cosine
  schedule and global-norm clipping, on the same tf.data input pipeline
  (a new model each repetition: Keras layers made before an Estimator
  builds its graphs cannot be used after it).

Only the steps after --warmup steps of each repetition are timed (graph
building, session start, tracing and the first steps are excluded). Also
measured in the same run: the tower's multiply-adds per training step
(3x the forward pass: forward, gradients of activations and of weights)
and the machine's dense float32 matmul rate (TensorFlow, 1024x1024), so
that the achieved multiply-adds per second can be put against it; and a
third leg, the Keras model compiled with XLA (`jit_compile=True`), to see
whether XLA would pay off (--noxla skips it); and a fourth, a plain
two-layer Keras CNN of about the tower's multiply-adds per example, to put
the tower's multiply-adds per second against what TensorFlow reaches on a
network of few large ops. Every leg runs with the engines' threads (one
per operation, improve_nas/threads.py), or, with TF_NUM_INTRAOP_THREADS=0
TF_NUM_INTEROP_THREADS=0 in the environment, TensorFlow's default: the
plain CNN's large ops are the ones that gain from several cores each.
Prints one JSON object.
"""

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

flags.DEFINE_string("arch", "1@96", "Tower N@P.")
flags.DEFINE_integer("image_size", 32, "Image side (digits resized).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("steps", 30, "Timed steps per repetition.")
flags.DEFINE_integer("warmup", 5, "Untimed steps at the start of each "
                     "repetition.")
flags.DEFINE_integer("repetitions", 3, "Alternating repetitions.")
flags.DEFINE_bool("xla", True, "Also time the Keras leg compiled with XLA "
                  "(slow: about ten times slower than without).")

FLAGS = flags.FLAGS


def search_config():
  """The demo's training settings on a constant generator of --arch."""
  from improve_nas.configs import demo  # pylint: disable=g-import-not-at-top
  c = demo.get_config()
  c.image_size = FLAGS.image_size
  c.generator = "constant"
  c.initial_arch = FLAGS.arch
  c.batch_size = FLAGS.batch_size
  c.max_iterations = 1
  # One iteration long enough for every repetition (the cosine schedule
  # then barely moves, for both sides alike).
  c.steps_per_iteration = 100_000
  return c


class StepTimes:
  """perf_counter() after each training step."""

  def __init__(self):
    self.times = []

  def mark(self):
    self.times.append(time.perf_counter())

  def examples_per_second(self, warmup: int, batch_size: int) -> float:
    timed = self.times[warmup:]
    return batch_size * (len(timed) - 1) / (timed[-1] - timed[0])


def adanet_repetition(estimator, train_fn, steps: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.model_dir import latest_global_step  # pylint: disable=g-import-not-at-top
  times = StepTimes()

  class Hook(tf.estimator.SessionRunHook):

    def after_run(self, run_context, run_values):
      times.mark()

  start = latest_global_step(estimator.model_dir)
  estimator.train(train_fn, max_steps=start + steps, hooks=[Hook()])
  return times


def keras_model(c, num_classes: int, channels: int, jit: bool = False):
  """The candidate's training step as a Keras model (custom train_step)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.data.input import IMAGE_KEY  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.tower import NasnetTower  # pylint: disable=g-import-not-at-top

  class Candidate(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.tower = NasnetTower(c.initial_arch, num_classes,
                               use_aux_head=c.use_aux_head,
                               drop_path_keep_prob=c.drop_path_keep_prob,
                               name="nasnet", seed=c.seed)
      self.cross_entropy = tf.keras.losses.CategoricalCrossentropy(
          from_logits=True, label_smoothing=c.label_smoothing)

    def call(self, images, training=False):
      return self.tower(images, training=training)["logits"]

    def train_step(self, data):
      features, labels = data
      step = self.optimizer.iterations
      progress = tf.minimum(tf.cast(step, tf.float32) /
                            float(c.steps_per_iteration), 1.0)
      seed = tf.stack([tf.cast(step, tf.int64), tf.constant(c.seed, tf.int64)])
      onehot = tf.one_hot(tf.reshape(tf.cast(labels, tf.int32), [-1]),
                          num_classes)
      with tf.GradientTape() as tape:
        out = self.tower(features[IMAGE_KEY], training=True,
                         progress=progress, seed=seed)
        loss = self.cross_entropy(onehot, out["logits"])
        if "aux_logits" in out:
          loss += c.aux_head_weight * self.cross_entropy(onehot,
                                                         out["aux_logits"])
        loss += c.weight_decay * tf.add_n(
            [tf.nn.l2_loss(v) for v in self.tower.trainable_weights
             if "kernel" in v.name])
      variables = self.tower.trainable_weights
      grads = tape.gradient(loss, variables)
      grads, _ = tf.clip_by_global_norm(grads, c.clip_gradients)
      self.optimizer.apply_gradients(zip(grads, variables))
      return {"loss": loss}

  model = Candidate()
  model.build((None, c.image_size, c.image_size, channels))
  schedule = tf.keras.optimizers.schedules.CosineDecay(
      c.learning_rate, c.steps_per_iteration)
  model.compile(optimizer=tf.keras.optimizers.SGD(schedule,
                                                  momentum=c.momentum),
                jit_compile=jit)
  return model


def plain_cnn(c, num_classes: int, channels: int):
  """(model, forward multiply-adds per image) of a plain two-layer Keras
  CNN of about a 1@96 tower's multiply-adds at 32x32: 3x3 conv to 32
  channels, 2x2 max pooling, 3x3 conv to 48, global average pooling,
  dense; trained with the same momentum and schedule."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.data.input import IMAGE_KEY  # pylint: disable=g-import-not-at-top
  size = c.image_size
  inputs = tf.keras.Input((size, size, channels), name=IMAGE_KEY)
  net = tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu")(
      inputs)
  net = tf.keras.layers.MaxPooling2D(2)(net)
  net = tf.keras.layers.Conv2D(48, 3, padding="same", activation="relu")(net)
  net = tf.keras.layers.GlobalAveragePooling2D()(net)
  logits = tf.keras.layers.Dense(num_classes)(net)
  model = tf.keras.Model({IMAGE_KEY: inputs}, logits)
  schedule = tf.keras.optimizers.schedules.CosineDecay(
      c.learning_rate, c.steps_per_iteration)
  model.compile(optimizer=tf.keras.optimizers.SGD(schedule,
                                                  momentum=c.momentum),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  half = size // 2
  mult_adds = (size * size * 9 * channels * 32 + half * half * 9 * 32 * 48 +
               48 * num_classes)
  return model, mult_adds


def keras_repetition(model, dataset, steps: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  times = StepTimes()
  callback = tf.keras.callbacks.LambdaCallback(
      on_train_batch_end=lambda batch, logs: times.mark())
  model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
            callbacks=[callback])
  return times


def matmul_rate(size: int = 1024, repeats: int = 20) -> float:
  """Dense float32 multiply-adds per second of TensorFlow's matmul."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.random.stateless_normal([size, size], seed=[1, 2])
  b = tf.random.stateless_normal([size, size], seed=[3, 4])

  @tf.function
  def chain(x):
    for _ in range(repeats):
      x = tf.matmul(x, b) * (1.0 / size)
    return x

  chain(a).numpy()  # trace and warm up
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    chain(a).numpy()
    best = min(best, time.perf_counter() - start)
  return repeats * size ** 3 / best


def main(argv):
  del argv
  from improve_nas import threads  # pylint: disable=g-import-not-at-top
  # The engines' threads (one per operation) for every leg, set before
  # TensorFlow runs anything; TF_NUM_INTRAOP_THREADS=0
  # TF_NUM_INTEROP_THREADS=0 in the environment: TensorFlow's default.
  threads_set = threads.configure()
  from improve_nas.verbosity import set_tf_verbosity  # pylint: disable=g-import-not-at-top
  set_tf_verbosity(False)
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  from improve_nas import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  from improve_nas.data import datasets  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.counting import tower_cost  # pylint: disable=g-import-not-at-top

  c = search_config()
  info = datasets.load_source(c.dataset).info
  channels = info.image_shape[-1]
  steps = FLAGS.warmup + FLAGS.steps
  results = {"adanet": [], "keras": [], "keras_xla": [], "cnn": []}
  with tempfile.TemporaryDirectory() as tmp:
    model_dir = os.path.join(tmp, "run")
    estimator = estimator_lib.make_estimator(c, model_dir=model_dir)
    fns = estimator_lib.input_fns(c, model_dir)
    for _ in range(FLAGS.repetitions):
      times = adanet_repetition(estimator, fns.train, steps)
      results["adanet"].append(times.examples_per_second(
          FLAGS.warmup, c.batch_size))
      # Keras layers made before an Estimator built its graphs are unusable
      # after it, so each repetition builds its model (untimed) anew.
      for leg, jit in (("keras", False), ("keras_xla", True))[
          :2 if FLAGS.xla else 1]:
        model = keras_model(c, info.num_classes, channels, jit=jit)
        times = keras_repetition(model, fns.train(), steps)
        results[leg].append(times.examples_per_second(FLAGS.warmup,
                                                      c.batch_size))
      cnn, cnn_mult_adds = plain_cnn(c, info.num_classes, channels)
      times = keras_repetition(cnn, fns.train(), steps)
      results["cnn"].append(times.examples_per_second(FLAGS.warmup,
                                                      c.batch_size))
  adanet_rate = statistics.median(results["adanet"])
  keras_rate = statistics.median(results["keras"])
  cost = tower_cost(c.initial_arch, info.num_classes, c.image_size, channels)
  step_mult_adds = 3 * cost.mult_adds * c.batch_size
  peak = matmul_rate()
  cnn_rate = statistics.median(results["cnn"])
  cnn_macs = 3 * cnn_mult_adds * cnn_rate
  adanet_macs = step_mult_adds * adanet_rate / c.batch_size
  print(json.dumps({
      "benchmark": "candidate_throughput",
      "cpu_count": os.cpu_count(),
      "threads": "one_per_op" if threads_set else "tensorflow_default",
      "arch": c.initial_arch, "image_size": c.image_size,
      "channels": channels, "batch_size": c.batch_size,
      "timed_steps": FLAGS.steps, "warmup_steps": FLAGS.warmup,
      "adanet_examples_per_second": [round(r, 1) for r in results["adanet"]],
      "keras_examples_per_second": [round(r, 1) for r in results["keras"]],
      "adanet_median": round(adanet_rate, 1),
      "keras_median": round(keras_rate, 1),
      "ratio_adanet_to_keras": round(adanet_rate / keras_rate, 3),
      "keras_xla_examples_per_second": [round(r, 1)
                                        for r in results["keras_xla"]],
      "ratio_keras_xla_to_keras": (round(
          statistics.median(results["keras_xla"]) / keras_rate, 3)
                                   if results["keras_xla"] else None),
      "forward_mult_adds_per_image": cost.mult_adds,
      "training_mult_adds_per_step": step_mult_adds,
      "adanet_gmacs_per_second": round(
          step_mult_adds * adanet_rate / c.batch_size / 1e9, 3),
      "keras_gmacs_per_second": round(
          step_mult_adds * keras_rate / c.batch_size / 1e9, 3),
      "matmul_gmacs_per_second": round(peak / 1e9, 2),
      "adanet_share_of_matmul_rate": round(
          step_mult_adds * adanet_rate / c.batch_size / peak, 4),
      "cnn_forward_mult_adds_per_image": cnn_mult_adds,
      "cnn_examples_per_second": [round(r, 1) for r in results["cnn"]],
      "cnn_median": round(cnn_rate, 1),
      "cnn_gmacs_per_second": round(cnn_macs / 1e9, 3),
      "adanet_gmacs_over_cnn_gmacs": round(adanet_macs / cnn_macs, 4),
  }))


if __name__ == "__main__":
  app.run(main)
