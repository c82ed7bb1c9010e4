"""Counts parameters and multiply-adds of NASNet-A towers.

Both are read off a real tower built in a private graph, so they cannot drift
from the model code. Results are cached per (arch, classes, image shape).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from improve_nas.nasnet.arch import AUX_HEAD_FILTERS, ArchSpec
from improve_nas.nasnet.ops import KERAS_3
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
  per architecture and shape, however the architecture is spelled; see
  `_disk_cached` for the copy kept between processes)."""
  return _disk_cached(ArchSpec.parse(arch), int(num_classes),
                      int(image_size), int(channels), tuple(aux_head_filters))


# Counts made by earlier processes, keyed by the model code's digest: a
# tower's count takes seconds (its graph is traced), and every search,
# report and test process needs the counts of the towers it meets.
# IMPROVE_NAS_CACHE=DIR moves the file; IMPROVE_NAS_CACHE=0 turns it off.
_CACHE_FILE = "tower_costs.json"


def _cache_path() -> Optional[str]:
  folder = os.environ.get("IMPROVE_NAS_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "improve_nas")
  return None if folder == "0" else os.path.join(folder, _CACHE_FILE)


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
  """What the counts depend on: the NASNet code and the TensorFlow version."""
  digest = hashlib.sha256(tf.__version__.encode())
  folder = os.path.dirname(os.path.abspath(__file__))
  for name in sorted(os.listdir(folder)):
    if name.endswith(".py"):
      with open(os.path.join(folder, name), "rb") as f:
        digest.update(name.encode() + f.read())
  return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _disk_cached(arch: ArchSpec, num_classes: int, image_size: int,
                 channels: int, aux_head_filters: Tuple[int, int]
                 ) -> TowerCost:
  path = _cache_path()
  key = (f"{_code_digest()}/{arch}/{num_classes}/{image_size}/{channels}/"
         f"{aux_head_filters[0]}x{aux_head_filters[1]}")
  saved = {}
  if path:
    try:
      with open(path) as f:
        saved = json.load(f)
      fields = saved[key]
      return TowerCost(arch, *fields)
    except (OSError, ValueError, KeyError, TypeError):
      pass  # not there (or unreadable): counted again
  cost = _tower_cost(arch, num_classes, image_size, channels,
                     aux_head_filters)
  if path:
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      saved = saved if isinstance(saved, dict) else {}
      saved[key] = [cost.params, cost.params_with_aux, cost.mult_adds,
                    cost.mult_adds_with_aux]
      temporary = f"{path}.{os.getpid()}.tmp"
      with open(temporary, "w") as f:
        json.dump(saved, f)
      os.replace(temporary, path)
    except OSError:
      pass  # a read-only home: counted in each process
  return cost


def _tower_cost(arch: ArchSpec, num_classes: int, image_size: int,
                channels: int, aux_head_filters: Tuple[int, int]
                ) -> TowerCost:
  # One training-mode build holds both towers: the auxiliary head's layers
  # and ops are the ones named "aux_*". Keras 2 (TF 2.15) builds it in a
  # private graph; Keras 3 (TF 2.21), whose layers are made eagerly, traces
  # the call of an eagerly made tower into a function graph (in a private
  # graph it loses some of the auxiliary head's weights).
  # A fixed drop-path seed: nothing runs, but with op determinism on
  # TensorFlow refuses to build unseeded random ops.
  seed = lambda: tf.constant([0, 0], tf.int64)
  shape = [1, image_size, image_size, channels]
  if KERAS_3:
    tower = NasnetTower(arch, num_classes, use_aux_head=True,
                        aux_head_filters=aux_head_filters)
    call = tf.function(lambda images: tower(images, training=True,
                                            seed=seed()))
    graph = call.get_concrete_function(
        tf.TensorSpec(shape, tf.float32)).graph
  else:
    with tf.Graph().as_default() as graph:
      tower = NasnetTower(arch, num_classes, use_aux_head=True,
                          aux_head_filters=aux_head_filters)
      tower(tf.compat.v1.placeholder(tf.float32, shape), training=True,
            seed=seed())
  sizes = {_name(v): int(np.prod(v.shape)) for v in tower.trainable_weights}
  counts = [(_AUX_SCOPE in op.name, _op_mult_adds(op))
            for op in graph.get_operations()]
  mult_adds = sum(n for aux, n in counts if not aux)
  params = sum(n for name, n in sizes.items() if _AUX_SCOPE not in name)
  return TowerCost(arch, params, sum(sizes.values()), mult_adds,
                   sum(n for _, n in counts))


def _name(variable) -> str:
  """A variable's full name: Keras 3 keeps it in `path`."""
  return getattr(variable, "path", None) or variable.name


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
