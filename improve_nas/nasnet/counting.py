"""Counts parameters and multiply-adds of NASNet-A towers.

Both are read off a real tower built in a private graph, so they cannot drift
from the model code. Results are cached per (arch, classes, image shape).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Tuple

import numpy as np
import tensorflow as tf

from improve_nas.nasnet.arch import AUX_HEAD_FILTERS, ArchSpec
from improve_nas.nasnet.tower import NasnetTower

__all__ = ["TowerCost", "tower_cost", "count_params", "inference_params"]

_AUX_SCOPE = "/aux_"


@dataclasses.dataclass(frozen=True)
class TowerCost:
  """Trainable parameters and multiply-adds per image of one tower."""

  arch: ArchSpec
  params: int             # inference tower (no auxiliary head)
  params_with_aux: int    # as trained (with the auxiliary head)
  mult_adds: int          # per image, inference tower
  mult_adds_with_aux: int = 0  # per image, forward pass as trained


def _op_mult_adds(op: tf.Operation) -> int:
  """Multiply-adds of one conv / depthwise conv / matmul op per batch."""
  if op.type not in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
    return 0
  out = op.outputs[0].shape.as_list()
  kernel = op.inputs[1].shape.as_list()
  if op.type == "MatMul":
    return int(out[0] * out[1] * kernel[0])
  if op.type == "Conv2D":  # kernel: [kh, kw, cin, cout]
    return int(np.prod(out) * kernel[0] * kernel[1] * kernel[2])
  return int(np.prod(out) * kernel[0] * kernel[1])  # depthwise, multiplier 1


def tower_cost(arch: "ArchSpec | str", num_classes: int = 10,
               image_size: int = 32, channels: int = 3,
               aux_head_filters: Tuple[int, int] = AUX_HEAD_FILTERS
               ) -> TowerCost:
  """Builds the tower in a private graph and counts what it holds (once
  per architecture and shape, however the architecture is spelled)."""
  return _tower_cost(ArchSpec.parse(arch), int(num_classes), int(image_size),
                     int(channels), tuple(aux_head_filters))


@functools.lru_cache(maxsize=256)
def _tower_cost(arch: ArchSpec, num_classes: int, image_size: int,
                channels: int, aux_head_filters: Tuple[int, int]
                ) -> TowerCost:
  # One training-mode build holds both towers: the auxiliary head's layers
  # and ops are the ones named "aux_*".
  with tf.Graph().as_default() as graph:
    tower = NasnetTower(arch, num_classes, use_aux_head=True,
                        aux_head_filters=aux_head_filters)
    images = tf.compat.v1.placeholder(
        tf.float32, [1, image_size, image_size, channels])
    # A fixed drop-path seed: nothing runs, but with op determinism on
    # TensorFlow refuses to build unseeded random ops.
    tower(images, training=True, seed=tf.constant([0, 0], tf.int64))
    sizes = {v.name: int(np.prod(v.shape.as_list()))
             for v in tower.trainable_weights}
    counts = [(_AUX_SCOPE in op.name, _op_mult_adds(op))
              for op in graph.get_operations()]
  mult_adds = sum(n for aux, n in counts if not aux)
  params = sum(n for name, n in sizes.items() if _AUX_SCOPE not in name)
  return TowerCost(arch, params, sum(sizes.values()), mult_adds,
                   sum(n for _, n in counts))


@functools.lru_cache(maxsize=256)
def inference_params(arch: "ArchSpec | str", num_classes: int = 10,
                     image_size: int = 32, channels: int = 3) -> int:
  """Trainable parameters of the inference tower, from an inference-mode
  build without the auxiliary head: the same count as `tower_cost(...)
  .params` in about a third of the time (no drop path, no aux head), for
  searches over many sizes."""
  arch = ArchSpec.parse(arch)
  with tf.Graph().as_default():
    tower = NasnetTower(arch, num_classes, use_aux_head=False)
    tower(tf.compat.v1.placeholder(
        tf.float32, [1, image_size, image_size, channels]), training=False)
    return sum(int(np.prod(v.shape.as_list())) for v in
               tower.trainable_weights)


def count_params(arch: "ArchSpec | str", num_classes: int = 10,
                 image_size: int = 32, channels: int = 3) -> int:
  """Trainable parameters of the inference tower (what an ensemble keeps)."""
  return tower_cost(ArchSpec.parse(arch), num_classes, image_size,
                    channels).params
