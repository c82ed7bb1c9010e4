"""The final ensemble as a `.keras` file: a functional Keras model that
`keras.saving.load_model` reads back anywhere improve_nas is importable.

Input: uint8 images of the dataset's shape (as the SavedModel's); the
model scales them to [-1, 1] and, when the search resized its images,
resizes them (bilinear, as evaluation does, without its clipping to
[-1, 1]), runs every member's tower in inference mode (no auxiliary head)
and returns the mixed logits. Loading it needs improve_nas imported
(`import improve_nas.keras_engine.keras_file`: its layers are registered
there) and Keras 3's `keras.saving.load_model`.
"""

from __future__ import annotations

from typing import List

import keras

from improve_nas.keras_engine.training import mix, variable_name
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.tower import NasnetTower

__all__ = ["save_keras_file", "SavedTower", "Mixture"]


@keras.saving.register_keras_serializable(package="improve_nas")
class SavedTower(NasnetTower):
  """An inference tower that a .keras file can rebuild from its config."""

  def __init__(self, arch: str, num_classes: int, **kwargs):
    super().__init__(ArchSpec.parse(arch), num_classes, use_aux_head=False,
                     **kwargs)
    self._saved = {"arch": str(arch), "num_classes": int(num_classes)}

  def call(self, images, training=None):
    return super().call(images, training=False)["logits"]

  def get_config(self):
    return dict(self._saved, name=self.name)


@keras.saving.register_keras_serializable(package="improve_nas")
class Mixture(keras.layers.Layer):
  """The members' logits times their mixture weights, summed."""

  def __init__(self, weights: List[float], **kwargs):
    super().__init__(**kwargs)
    self.mixture = [float(w) for w in weights]

  def call(self, logits):
    return mix(self.mixture, logits)

  def get_config(self):
    return dict(super().get_config(), weights=self.mixture)


def save_keras_file(members: List, num_classes: int, image_size: int,
                    image_shape, path: str) -> None:
  """Writes the ensemble of `members` (their trained towers and weights) to
  `path` (a .keras file)."""
  images = keras.Input(tuple(image_shape), dtype="uint8", name="image")
  net = keras.layers.Rescaling(2.0 / 255.0, offset=-1.0)(images)
  if tuple(image_shape[:2]) != (image_size, image_size):
    net = keras.layers.Resizing(image_size, image_size)(net)
  logits = []
  for i, member in enumerate(members):
    tower = SavedTower(str(member.arch), num_classes, name=f"nasnet_{i}")
    logits.append(tower(net))
    trained = {_relative(v): v for v in member.tower.weights}
    for variable in tower.weights:
      variable.assign(trained[_relative(variable)])
  mixed = Mixture([m.weight for m in members], name="mixture")(logits)
  keras.Model(images, mixed, name="ensemble").save(path)


def _relative(variable) -> str:
  """A tower variable's path below the tower ("stem_conv/kernel")."""
  return variable_name(variable).split("/", 1)[1]
