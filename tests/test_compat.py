"""adanet 0.9.0 on TF 2.15: each patch of compat.py (and what fails
without it), a real two-iteration adanet search, and batch norm moving
statistics updated inside adanet's graph."""

import sys
import threading
import types

import numpy as np
import pytest
import tensorflow as tf

from improve_nas import compat
from improve_nas.adanas_estimator import check_adanet_version
from improve_nas.builder import (CandidateGenerator, NasnetBuilder,
                                 TrainingConfig)
from improve_nas.compat import adanet
from improve_nas.config import base_config
from improve_nas.ensemble import MixtureWeightEnsembler
from improve_nas.errors import ConfigError
from improve_nas.nasnet.counting import count_params
from improve_nas.proposals import ConstantProposer

NUM_CLASSES = 3


def test_graph_view_shim_installed_and_idempotent():
  from tensorflow.python.checkpoint import graph_view  # pylint: disable=g-import-not-at-top
  old = "tensorflow.python.training.tracking.graph_view"
  assert sys.modules[old] is graph_view
  compat.install_alias()
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
  training = TrainingConfig.from_config(
      base_config(), steps_per_iteration=steps, knowledge_distillation="none")
  generator = CandidateGenerator(
      ConstantProposer(
          "1@24", count_fn=lambda arch: count_params(arch, NUM_CLASSES, 8, 1)),
      lambda arch: NasnetBuilder(arch, training))
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


def _run(tensor):
  with tf.compat.v1.Session(graph=tensor.graph) as session:
    return session.run(tensor)


def test_a_diverged_candidate_never_wins_the_running_selection():
  """adanet turns a NaN loss into -inf, so a diverged candidate would win
  every step; with nan_candidates_lose NaN and inf count as +inf."""
  from adanet.core import iteration  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    candidates = [types.SimpleNamespace(adanet_loss=tf.constant(v))
                  for v in (float("nan"), 2.0, float("inf"), 1.0)]
    builder = iteration._IterationBuilder.__new__(iteration._IterationBuilder)  # pylint: disable=protected-access
    plain = builder._best_candidate_index(candidates, None)  # pylint: disable=protected-access
    compat.nan_candidates_lose(builder)
    patched = builder._best_candidate_index(candidates, None)  # pylint: disable=protected-access
    assert _run(plain) == 0  # adanet alone: the NaN candidate
    assert _run(patched) == 3
    assert _run(compat.best_finite_index(tf.constant([np.nan, np.inf]))) == 0


class _Recorder:
  """Stands in for an adanet summary: records the scalars it is given."""

  def __init__(self):
    self.names = []

  def scalar(self, name, tensor, family=None, description=None):
    del tensor, family, description
    self.names.append(name)


def test_the_scoped_summary_is_let_go_when_the_context_ends():
  from adanet.core import ensemble_builder  # pylint: disable=g-import-not-at-top
  compat.install_subnetwork_context()
  summary = _Recorder()
  with tf.Graph().as_default():
    with ensemble_builder._monkey_patch_context("scope", summary, []):  # pylint: disable=protected-access
      scalar = tf.compat.v1.summary.scalar
      scalar("inside", tf.constant(1.0))
    assert summary.names == ["inside"]
    # Whatever kept adanet's wrapper past the context no longer reaches
    # the summary (and through it the iteration's graph).
    with pytest.raises(RuntimeError, match="after its graph was built"):
      scalar("after", tf.constant(2.0))


def test_replica_threads_each_keep_their_own_patch():
  """Two replica threads inside adanet's context at once: the second
  one's exit must not undo the first one's patch (adanet's global swaps
  did)."""
  compat.install_replica_dispatchers()
  summaries = [_Recorder(), _Recorder()]
  entered, second_left = threading.Barrier(2), threading.Event()
  errors = []

  def replica(i):
    try:
      with tf.Graph().as_default():
        with compat._per_thread_context(f"scope_{i}", summaries[i], []):  # pylint: disable=protected-access
          entered.wait(timeout=10)
          if i == 1:
            tf.summary.scalar("from_1", tf.constant(1.0))
            return
          second_left.wait(timeout=10)
          tf.compat.v1.summary.scalar("from_0", tf.constant(0.0))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)
    finally:
      if i == 1:
        second_left.set()

  threads = [threading.Thread(target=replica, args=(i,)) for i in (0, 1)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=20)
  assert not errors
  assert summaries[0].names == ["from_0"] and summaries[1].names == ["from_1"]
  # Outside any context the dispatchers call TensorFlow's own function.
  with tf.Graph().as_default():
    assert tf.compat.v1.summary.scalar("plain", tf.constant(1.0)).dtype == \
        tf.string


def test_distributed_training_keeps_the_first_replicas_summary_op():
  from tensorflow_estimator.python.estimator import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  compat.install_distributed_summary_op()
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with tf.Graph().as_default():
    summary = tf.compat.v1.summary.scalar("loss", tf.constant(1.0))
    scaffold = tf.compat.v1.train.Scaffold(summary_op=summary)
    combined = estimator_lib._combine_distributed_scaffold(scaffold, strategy)  # pylint: disable=protected-access
    assert combined.summary_op is summary


def test_step_counters_are_incremented_by_the_first_replica_only():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with tf.Graph().as_default(), strategy.scope():
    plain = tf.Variable(0, dtype=tf.int64, trainable=False)
    with tf.variable_creator_scope(compat.counters_on_first_replica):
      counter = tf.Variable(0, dtype=tf.int64, trainable=False)
      weight = tf.Variable(0.0, trainable=True)
  first = tf.VariableAggregation.ONLY_FIRST_REPLICA
  assert plain.aggregation != first
  assert counter.aggregation == first and weight.aggregation != first


def test_an_unsupported_adanet_is_one_line_naming_both_versions():
  check_adanet_version()  # the installed one
  with pytest.raises(ConfigError) as info:
    check_adanet_version("0.10.0")
  message = str(info.value)
  assert "adanet 0.10.0 is installed" in message and "0.9.0" in message
  assert "\n" not in message and "pip install --no-deps adanet==0.9.0" in message
