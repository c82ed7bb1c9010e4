"""The Keras engine's SavedModel: the final ensemble, serving raw images with
the adanet engine's signatures.

`serving_default` takes `image`, uint8 [batch, H, W, C] of the dataset's
shape, and returns `class_ids` [batch] (int64) and `probabilities`
[batch, classes]; `predict` also returns the ensemble's `logits`. Images
are preprocessed as in evaluation (resized to the search's image size,
scaled to [-1, 1]); images of another shape are refused. Beside it,
ensemble.keras holds the same ensemble as a Keras model (keras_file.py).
"""

from __future__ import annotations

import os
import time
from typing import List

import keras
import numpy as np
import tensorflow as tf

from improve_nas.data.input import IMAGE_KEY, preprocess
from improve_nas.keras_engine import keras_file
from improve_nas.keras_engine.training import mix, variable_name

__all__ = ["export_ensemble", "KERAS_FILE"]

KERAS_FILE = "ensemble.keras"


class _Untracked:
  """Holds objects out of sight of tf.Module's tracking."""

  def __init__(self, items):
    self.items = items


class _Ensemble(tf.Module):
  """The members' towers in inference mode, mixed by their weights.

  Each member's weights are saved as one flat vector (`member_weights[i]`,
  in the order of its tower's variables, auxiliary head left out), which
  the serving function splits and hands to the tower's Keras variables
  through a `keras.StatelessScope`. Saved one by one, the 1,113 variables
  of the demo's three 1@96 towers took 9.4 s of the SavedModel's 11 s (its
  saver and export graph make some twenty operations per variable) and
  3.6 s to load; flat, 1.7 s and 0.7 s. The same weights by name are in
  ensemble.keras.
  """

  def __init__(self, members, image_size: int, image_shape):
    super().__init__(name="ensemble")
    self._towers = _Untracked([m.tower for m in members])
    self._variables = _Untracked([
        [v for v in m.tower.weights if "/aux_" not in variable_name(v)]
        for m in members])
    self.member_weights = [
        tf.Variable(tf.concat([tf.reshape(v, [-1]) for v in variables], 0),
                    trainable=False, name=f"member_{i}")
        for i, variables in enumerate(self._variables.items)]
    self.mixture_weights = tf.constant([m.weight for m in members])
    self._image_size = image_size
    self._shape = [None, *image_shape]
    spec = tf.TensorSpec(self._shape, tf.uint8, name=IMAGE_KEY)
    self.predict = tf.function(self._predict, input_signature=[spec])
    # (calls the traced `predict`: the towers are traced once)
    self.serve = tf.function(self._serve, input_signature=[spec])

  def _logits(self, images):
    logits = []
    for tower, variables, flat in zip(self._towers.items,
                                      self._variables.items,
                                      self.member_weights):
      pieces = tf.split(flat, [int(np.prod(v.shape)) for v in variables])
      mapping = [(v, tf.reshape(p, v.shape))
                 for v, p in zip(variables, pieces)]
      with keras.StatelessScope(state_mapping=mapping):
        logits.append(tower(images, training=False)["logits"])
    return mix(tf.unstack(self.mixture_weights), logits)

  def _predict(self, image):
    # A loaded signature does not check the shape it declares: images of
    # another size or depth are refused here, never resized.
    images = preprocess(tf.ensure_shape(image, self._shape), self._image_size)
    logits = self._logits(images)
    return {"logits": logits,
            "probabilities": tf.nn.softmax(logits),
            "class_ids": tf.argmax(logits, axis=-1, output_type=tf.int64)}

  def _serve(self, image):
    out = self.predict(image)
    return {"class_ids": out["class_ids"],
            "probabilities": out["probabilities"]}


def export_ensemble(facts, members: List, export_dir: str) -> str:
  """Saves the ensemble of `members` to a new timestamped folder in
  `export_dir` (written as NAME.partial, then renamed) and returns it: a
  SavedModel, and the same ensemble as a Keras model in ensemble.keras
  (keras_file.py)."""
  module = _Ensemble(members, facts.image_size, facts.info.image_shape)
  tf.io.gfile.makedirs(export_dir)
  for leftover in tf.io.gfile.glob(os.path.join(export_dir, "*.partial")):
    tf.io.gfile.rmtree(leftover)
  stamp = int(time.time())
  while tf.io.gfile.exists(os.path.join(export_dir, str(stamp))):
    stamp += 1
  final = os.path.join(export_dir, str(stamp))
  tf.saved_model.save(module, final + ".partial", signatures={
      "serving_default": module.serve, "predict": module.predict})
  keras_file.save_keras_file(members, facts.num_classes, facts.image_size,
                             facts.info.image_shape,
                             os.path.join(final + ".partial", KERAS_FILE))
  tf.io.gfile.rename(final + ".partial", final)
  return final
