"""The NASNet-A tower for CIFAR-sized images, as one Keras layer."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf

from improve_nas.errors import ConfigError
from improve_nas.nasnet import ops
from improve_nas.nasnet.arch import (AUX_HEAD_FILTERS, IMAGE_SIZE_RULE,
                                     ArchSpec, image_size_fits)
from improve_nas.nasnet.cells import Cell, NORMAL_CELL, REDUCTION_CELL

__all__ = ["NasnetTower", "STEM_MULTIPLIER", "AUX_HEAD_FILTERS",
           "check_aux_head_filters"]

STEM_MULTIPLIER = 3


def check_aux_head_filters(filters) -> Tuple[int, int]:
  """(bottleneck, output) channels of the auxiliary head, validated."""
  try:
    pair = tuple(filters)
  except TypeError:
    pair = ()
  if len(pair) != 2 or not all(isinstance(f, int) and not isinstance(f, bool)
                               and f > 0 for f in pair):
    raise ConfigError(
        f"aux_head_filters {filters!r}: expected two positive integers "
        f"(bottleneck, output channels), e.g. {AUX_HEAD_FILTERS} as in the "
        "paper")
  return pair


def check_image_shape(image_size: int, arch: Optional[ArchSpec] = None) -> None:
  """Raises ConfigError when a tower cannot take `image_size` images."""
  if not image_size_fits(image_size):
    where = f" for arch '{arch}'" if arch else ""
    raise ConfigError(
        f"image_size {image_size!r}{where}: must be {IMAGE_SIZE_RULE}")


class NasnetTower(tf.keras.layers.Layer):
  """NASNet-A(N@P): stem, 3 stacks of N normal cells split by 2 reduction cells,
  head, and an auxiliary head after the second stack (training only).

  Call it on channels-last images of any size divisible by 4 and any number of
  channels: `tower(images, training=..., progress=..., seed=...)` where
  progress in [0, 1] drives the drop-path schedule (e.g. iteration_step /
  steps_per_iteration) and seed (int64 [2], optional) makes drop path
  stateless. The constructor's `seed` seeds the weight initializers.

  Returns:
    A dict with "logits", "last_layer" (the pooled penultimate features) and,
    in training with `use_aux_head`, "aux_logits".
  """

  def __init__(self, arch: ArchSpec, num_classes: int,
               use_aux_head: bool = True, drop_path_keep_prob: float = 0.6,
               dropout_rate: float = 0.0, name: str = "nasnet",
               seed: Optional[int] = None,
               aux_head_filters: Tuple[int, int] = AUX_HEAD_FILTERS,
               **kwargs):
    super().__init__(name=name, **kwargs)
    # Initializer seeds, for the layers made here and those built on the
    # first call; None leaves them unseeded.
    self._seeds = None if seed is None else ops.SeedStream(seed)
    self.aux_head_filters = check_aux_head_filters(aux_head_filters)
    with ops.seeds_from(self._seeds):
      self._make_layers(arch, num_classes, use_aux_head,
                        drop_path_keep_prob, dropout_rate)

  def _make_layers(self, arch, num_classes, use_aux_head,
                   drop_path_keep_prob, dropout_rate):
    self.arch = ArchSpec.parse(arch)
    self.num_classes = num_classes
    self.use_aux_head = use_aux_head
    filters = self.arch.conv_filters
    n = self.arch.cells_per_stack
    total_cells = self.arch.num_cells + 2
    self.stem_conv = tf.keras.layers.Conv2D(
        STEM_MULTIPLIER * filters, 3, padding="same", use_bias=False,
        kernel_initializer=ops.kernel_initializer(), name="stem_conv")
    self.stem_bn = ops.batch_norm("stem_bn")
    self.cells = []
    index = 0
    for stack in range(3):
      stack_filters = filters * 2 ** stack
      if stack:
        self.cells.append(Cell(
            REDUCTION_CELL, stack_filters, 2, index, total_cells,
            drop_path_keep_prob, name=f"reduction_cell_{stack - 1}"))
        index += 1
      for _ in range(n):
        self.cells.append(Cell(
            NORMAL_CELL, stack_filters, 1, index, total_cells,
            drop_path_keep_prob, name=f"cell_{index}"))
        index += 1
    # The auxiliary head reads the last normal cell of the second stack.
    self.aux_after = 2 * n  # index into self.cells (one reduction before it)
    if use_aux_head:
      self.aux_pool_bn = ops.batch_norm("aux_bn_0")
      self.aux_conv0 = ops.conv1x1(self.aux_head_filters[0], "aux_conv_0")
      self.aux_conv1 = None  # Its kernel covers the remaining map: see build.
      self._aux_pool = True
      self.aux_bn1 = ops.batch_norm("aux_bn_1")
      self.aux_dense = tf.keras.layers.Dense(
          num_classes, kernel_initializer=ops.kernel_initializer(),
          name="aux_logits")
    self.dropout = tf.keras.layers.Dropout(dropout_rate, name="dropout")
    self.dense = tf.keras.layers.Dense(
        num_classes, kernel_initializer=ops.kernel_initializer(),
        name="logits")

  def build(self, input_shape):
    with ops.seeds_from(self._seeds):
      self._build(input_shape)

  def _build(self, input_shape):
    shape = tf.TensorShape(input_shape)
    for size in (shape[1], shape[2]):
      if size is not None:
        check_image_shape(int(size), self.arch)
    if self.use_aux_head:
      if shape[1] is None or shape[2] is None:
        raise ConfigError(
            f"arch '{self.arch}': the auxiliary head needs images of a known "
            f"size, got shape {shape}; set use_aux_head=False or give the "
            "input a static height and width")
      # The head reads the second stack (half the image size in each
      # dimension); it pools 5x5 / 3 when the map allows it in both
      # dimensions, then its conv covers the whole remaining map.
      aux_size = (int(shape[1]) // 2, int(shape[2]) // 2)
      self._aux_pool = min(aux_size) >= 5
      kernel = tuple((s - 5) // 3 + 1 if self._aux_pool else s
                     for s in aux_size)
      self.aux_conv1 = tf.keras.layers.Conv2D(
          self.aux_head_filters[1], kernel, padding="valid", use_bias=False,
          kernel_initializer=ops.kernel_initializer(), name="aux_conv_1")
    super().build(input_shape)

  def _aux_head(self, net, training):
    net = tf.nn.relu(net)
    if self._aux_pool:
      net = tf.nn.avg_pool2d(net, 5, 3, "VALID")
    net = tf.nn.relu(self.aux_pool_bn(self.aux_conv0(net), training=training))
    net = tf.nn.relu(self.aux_bn1(self.aux_conv1(net), training=training))
    return self.aux_dense(tf.reduce_mean(net, axis=[1, 2]))

  @tf.autograph.experimental.do_not_convert
  def call(self, images, training=None, progress=1.0,
           seed=None) -> Dict[str, tf.Tensor]:
    with ops.seeds_from(self._seeds):  # cells build on their first call
      return self._call(images, training, progress, seed)

  def _call(self, images, training, progress, seed) -> Dict[str, tf.Tensor]:
    net = self.stem_bn(self.stem_conv(images), training=training)
    older, prev = net, net
    outputs = {}
    for i, cell in enumerate(self.cells):
      cell_seed = None if seed is None else (
          tf.random.experimental.stateless_fold_in(seed, i))
      older, prev = prev, cell([older, prev], training=training,
                               progress=progress, seed=cell_seed)
      if i == self.aux_after and self.use_aux_head and training:
        outputs["aux_logits"] = self._aux_head(prev, training)
    net = tf.reduce_mean(tf.nn.relu(prev), axis=[1, 2])
    outputs["last_layer"] = net
    outputs["logits"] = self.dense(self.dropout(net, training=training))
    return outputs

  def keep_probs(self, progress) -> list:
    """Drop-path keep probability of every cell at the given progress."""
    return [cell.keep_prob(progress) for cell in self.cells]
