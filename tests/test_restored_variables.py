"""Towers built for inference take their variables from a checkpoint, so
they are built without initializers (improve_nas/restored_variables.py):
the same values after a restore, fewer operations, and a clear failure when
nothing restores them."""

import numpy as np
import pytest
import tensorflow as tf

from improve_nas.nasnet.tower import NasnetTower
from improve_nas.restored_variables import RestoredVariable, restored_variables


def _tower_graph(restored: bool):
  graph = tf.Graph()
  with graph.as_default():
    images = tf.constant(
        np.linspace(-1, 1, 2 * 8 * 8).reshape([2, 8, 8, 1]), tf.float32)
    with restored_variables(enabled=restored):
      tower = NasnetTower("1@24", 10, use_aux_head=True, seed=3,
                          aux_head_filters=(4, 8))
      logits = tower(images, training=False, progress=0.5)["logits"]
  return graph, tower, logits


def _saved_logits(tmp_path):
  """A normally built tower's logits, and the checkpoint of its weights."""
  graph, _, logits = _tower_graph(restored=False)
  with graph.as_default(), tf.compat.v1.Session() as session:
    session.run(tf.compat.v1.global_variables_initializer())
    expected = session.run(logits)
    prefix = tf.compat.v1.train.Saver().save(session,
                                             str(tmp_path / "model.ckpt"))
  return expected, prefix


def test_restored_tower_computes_what_was_saved_with_fewer_operations(tmp_path):
  expected, prefix = _saved_logits(tmp_path)
  plain_ops = len(_tower_graph(restored=False)[0].get_operations())
  graph, tower, logits = _tower_graph(restored=True)
  assert all(isinstance(v, RestoredVariable) for v in tower.weights)
  # Trainable flags and names are the ones a normal build gives.
  assert {v.name for v in tower.trainable_weights} == {
      v.name for v in _tower_graph(restored=False)[1].trainable_weights}
  assert len(graph.get_operations()) < 0.6 * plain_ops
  with graph.as_default():
    scaffold = tf.compat.v1.train.Scaffold()  # its init op must build
    creator = tf.compat.v1.train.ChiefSessionCreator(
        scaffold=scaffold, checkpoint_filename_with_path=prefix)
    with tf.compat.v1.train.MonitoredSession(creator) as session:
      np.testing.assert_array_equal(session.run(logits), expected)
    # The checkpoint's MetaGraphDef imports again (TensorFlow Serving's way).
    meta = tf.compat.v1.train.export_meta_graph()
  with tf.Graph().as_default():
    saver = tf.compat.v1.train.import_meta_graph(meta)
    with tf.compat.v1.Session() as session:
      saver.restore(session, prefix)
      np.testing.assert_array_equal(session.run(logits.name), expected)


def test_unrestored_variables_are_named_not_made_up(tmp_path):
  graph, _, _ = _tower_graph(restored=True)
  with graph.as_default():
    creator = tf.compat.v1.train.ChiefSessionCreator(
        scaffold=tf.compat.v1.train.Scaffold(),
        checkpoint_dir=str(tmp_path))  # no checkpoint there
    with pytest.raises(RuntimeError, match="nasnet/"):
      tf.compat.v1.train.MonitoredSession(creator)


def test_training_towers_and_strategies_keep_initializers():
  with tf.Graph().as_default():
    images = tf.zeros([2, 8, 8, 1])
    with restored_variables(enabled=False):
      tower = NasnetTower("1@24", 10, seed=3)
      tower(images, training=True, progress=0.5)
    assert not any(isinstance(v, RestoredVariable) for v in tower.weights)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope(), \
        restored_variables():
      tower = NasnetTower("1@24", 10, seed=3, name="under_strategy")
      tower(images, training=False, progress=0.5)
    assert not any(isinstance(v, RestoredVariable) for v in tower.weights)
