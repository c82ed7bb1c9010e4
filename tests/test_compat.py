"""adanet 0.9.0 on TF 2.15: the shims, a real two-iteration search, and
batch norm moving statistics updated inside adanet's graph."""

import sys

import adanet
import numpy as np
import tensorflow as tf

from improve_nas import compat
from improve_nas.builder import NasnetBuilder, TrainingConfig
from improve_nas.ensemble import MixtureWeightEnsembler
from improve_nas.generators import ConstantGenerator
from improve_nas.nasnet.counting import count_params

NUM_CLASSES = 3


def test_graph_view_shim_installed_and_idempotent():
  from tensorflow.python.checkpoint import graph_view  # pylint: disable=g-import-not-at-top
  old = "tensorflow.python.training.tracking.graph_view"
  assert sys.modules[old] is graph_view
  compat.install()
  assert sys.modules[old] is graph_view
  # The import form adanet uses works.
  from tensorflow.python.training.tracking import graph_view as g  # pylint: disable=g-import-not-at-top
  assert g is graph_view


def _vector_input_fn(batch_size=16, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(64, 4)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)

  def input_fn():
    ds = tf.data.Dataset.from_tensor_slices(({"x": x}, y))
    return ds.repeat().batch(batch_size, drop_remainder=True)

  return input_fn


class _DenseBuilder(adanet.subnetwork.Builder):
  """A small MLP made of explicitly named Keras layers."""

  def __init__(self, units):
    self._units = units

  @property
  def name(self):
    return f"dense_{self._units}"

  def build_subnetwork(self, features, logits_dimension, training,
                       iteration_step, summary, previous_ensemble=None):
    hidden = tf.keras.layers.Dense(self._units, activation="relu",
                                   name="hidden")
    output = tf.keras.layers.Dense(logits_dimension, name="logits")
    last_layer = hidden(features["x"])
    return adanet.Subnetwork(
        last_layer=last_layer, logits=output(last_layer),
        complexity=tf.constant(1.0),
        shared={"layers": [hidden, output]})

  def build_subnetwork_train_op(self, subnetwork, loss, var_list, labels,
                                iteration_step, summary, previous_ensemble):
    optimizer = tf.compat.v1.train.GradientDescentOptimizer(0.05)
    return optimizer.minimize(loss, var_list=var_list)


class _DenseGenerator(adanet.subnetwork.Generator):

  def generate_candidates(self, previous_ensemble, iteration_number,
                          previous_ensemble_reports, all_reports, config=None):
    return [_DenseBuilder(8)]


def test_two_iteration_adanet_estimator(tmp_path):
  steps = 3
  estimator = adanet.Estimator(
      head=tf.estimator.MultiClassHead(NUM_CLASSES),
      subnetwork_generator=_DenseGenerator(),
      max_iteration_steps=steps,
      max_iterations=2,
      force_grow=True,
      model_dir=str(tmp_path),
      config=tf.estimator.RunConfig(tf_random_seed=1, save_summary_steps=100,
                                    log_step_count_steps=1000))
  input_fn = _vector_input_fn()
  estimator.train(input_fn, max_steps=2 * steps)
  metrics = estimator.evaluate(input_fn, steps=2)
  assert metrics["iteration"] == 1
  assert metrics["global_step"] == 2 * steps
  assert np.isfinite(metrics["loss"])
  assert 0.0 <= metrics["accuracy"] <= 1.0
  # The second iteration's ensemble holds both iterations' members.
  names = tf.train.list_variables(str(tmp_path))
  members = {n for n, _ in names if "/hidden/kernel" in n}
  assert any("t0_dense_8" in n for n in members), members
  assert any("t1_dense_8" in n for n in members), members
  predictions = next(estimator.predict(input_fn, yield_single_examples=True))
  assert predictions["logits"].shape == (NUM_CLASSES,)


def _image_input_fn(size=8, channels=1, batch_size=8, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.uniform(-1, 1, (32, size, size, channels)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, 32).astype(np.int64)

  def input_fn():
    ds = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
    return ds.repeat().batch(batch_size, drop_remainder=True)

  return input_fn


def test_batch_norm_moving_statistics_update_in_adanet(tmp_path):
  steps = 4
  training = TrainingConfig(steps_per_iteration=steps,
                            knowledge_distillation="none")
  generator = ConstantGenerator(
      "1@24", builder_fn=lambda arch: NasnetBuilder(arch, training),
      count_fn=lambda arch: count_params(arch, NUM_CLASSES, 8, 1))
  estimator = adanet.Estimator(
      head=tf.estimator.MultiClassHead(NUM_CLASSES),
      subnetwork_generator=generator,
      max_iteration_steps=steps,
      max_iterations=1,
      ensemblers=[MixtureWeightEnsembler(learn=False)],
      model_dir=str(tmp_path),
      config=tf.estimator.RunConfig(tf_random_seed=1, save_summary_steps=100,
                                    log_step_count_steps=1000))
  estimator.train(_image_input_fn(), max_steps=steps)

  reader = tf.train.load_checkpoint(str(tmp_path))
  shapes = reader.get_variable_to_shape_map()
  tower = [n for n in shapes if "nasnet_1x24" in n and "/nasnet/" in n]
  means = sorted(n for n in tower if n.endswith("moving_mean"))
  variances = sorted(n for n in tower if n.endswith("moving_variance"))
  assert means and len(means) == len(variances), sorted(shapes)
  assert any("stem_bn" in n for n in means)
  assert any("/aux_bn_" in n for n in means)
  # Initial values are 0 and 1; every batch norm of the tower (auxiliary head
  # included, as it runs in training) must have moved.
  unchanged_means = [n for n in means if not np.any(reader.get_tensor(n))]
  unchanged_vars = [n for n in variances
                    if np.all(reader.get_tensor(n) == 1.0)]
  assert not unchanged_means
  assert not unchanged_vars
