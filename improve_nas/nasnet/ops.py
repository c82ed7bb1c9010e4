"""The operations NASNet-A cells are made of, as Keras layers.

Every layer takes an explicit name, so that variable names are the same each
time adanet rebuilds a tower in a new graph.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Optional

import tensorflow as tf

__all__ = [
    "BN_MOMENTUM", "BN_EPSILON", "SeedStream", "seeds_from",
    "kernel_initializer", "batch_norm", "FusedBatchNorm", "KERAS_3",
    "DropPath", "ReluConvBn", "SepConvStack", "FactorizedReduction",
    "make_op",
]

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class SeedStream:
  """Initializer seeds seed*K+1, seed*K+2, ... for the layers of one tower.

  Keras draws the seed of an unseeded initializer from an unseeded Python
  generator, so without one two runs start from different weights even with
  a graph-level seed.
  """

  def __init__(self, seed: int):
    self._base = (int(seed) * 1_000_003) % (2 ** 31 - 1)
    self._count = 0

  def next(self) -> int:
    self._count += 1
    return (self._base + self._count) % (2 ** 31 - 1)


_STREAMS: list = []  # the active SeedStream is the last one


@contextlib.contextmanager
def seeds_from(stream: Optional[SeedStream]):
  """Layers created inside the block take their initializer seeds from
  `stream` (unseeded when it is None)."""
  _STREAMS.append(stream)
  try:
    yield
  finally:
    _STREAMS.pop()


def kernel_initializer() -> tf.keras.initializers.Initializer:
  """Variance scaling on fan-out, as NASNet does for its weights."""
  stream = _STREAMS[-1] if _STREAMS else None
  return tf.keras.initializers.VarianceScaling(
      scale=2.0, mode="fan_out", distribution="truncated_normal",
      seed=stream.next() if stream else None)


# TensorFlow 2.16 and later: tf.keras is Keras 3.
KERAS_3 = int(tf.__version__.split(".")[1]) >= 16


def batch_norm(name: str) -> tf.keras.layers.Layer:
  """Batch norm over the channels, as one fused operation.

  Keras 2 (the adanet engine) fuses it itself. Keras 3 builds it from a
  dozen small operations, and their gradients, at each of a tower's
  batch norms, so under Keras 3 it is FusedBatchNorm below.
  """
  if KERAS_3:
    return FusedBatchNorm(name=name)
  return tf.keras.layers.BatchNormalization(
      momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=True, name=name)


class FusedBatchNorm(tf.keras.layers.Layer):
  """Keras 3 batch norm over the last axis as TensorFlow's FusedBatchNormV3,
  with the variables of Keras's own BatchNormalization (gamma, beta,
  moving_mean, moving_variance; same paths, same counts) and its momentum
  and epsilon. As in Keras 2's fused batch norm, the moving variance
  averages the batch variance with Bessel's correction.
  """

  def build(self, input_shape):
    shape = (input_shape[-1],)
    add = functools.partial(self.add_weight, shape=shape, autocast=False)
    self.gamma = add(name="gamma", initializer="ones")
    self.beta = add(name="beta", initializer="zeros")
    self.moving_mean = add(name="moving_mean", initializer="zeros",
                           trainable=False)
    self.moving_variance = add(name="moving_variance", initializer="ones",
                               trainable=False)

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    if not training:
      return tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma, self.beta, mean=self.moving_mean,
          variance=self.moving_variance, epsilon=BN_EPSILON,
          is_training=False)[0]
    # With exponential_avg_factor the operation returns the moving
    # statistics already updated.
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, self.gamma, self.beta, mean=self.moving_mean,
        variance=self.moving_variance, epsilon=BN_EPSILON, is_training=True,
        exponential_avg_factor=1.0 - BN_MOMENTUM)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
      # Under tf.distribute replicas each normalizes its own share of the
      # batch; the moving statistics are averaged over the replicas, so
      # that every replica keeps the same ones.
      mean, variance = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                          [mean, variance])
    self.moving_mean.assign(mean)
    self.moving_variance.assign(variance)
    return outputs

  def compute_output_shape(self, input_shape):
    return input_shape


def conv1x1(filters: int, name: str, strides: int = 1) -> tf.keras.layers.Conv2D:
  return tf.keras.layers.Conv2D(
      filters, 1, strides=strides, padding="valid", use_bias=False,
      kernel_initializer=kernel_initializer(), name=name)


class DropPath(tf.keras.layers.Layer):
  """Drops a whole op output per example with probability 1 - keep_prob.

  Kept outputs are scaled by 1 / keep_prob; nothing happens in inference.
  """

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, keep_prob, training=None, seed=None):
    """`seed`: int64 [2] for stateless noise (the same seed drops the same
    paths, so a resumed run repeats an uninterrupted one); None draws from
    TensorFlow's stateful generator."""
    if not training:
      return inputs
    keep_prob = tf.cast(keep_prob, inputs.dtype)
    batch = tf.shape(inputs)[0]
    if seed is None:
      noise = tf.random.uniform([batch, 1, 1, 1], dtype=inputs.dtype)
    else:
      # Under tf.distribute replicas, each holding an equal consecutive
      # share of the global batch, every replica draws the global batch's
      # noise and keeps its share: together they drop what one device
      # would, where the same seed alone would drop the same paths in
      # every share.
      context = tf.distribute.get_replica_context()
      replicas = context.num_replicas_in_sync if context else 1
      noise = tf.random.stateless_uniform([batch * replicas, 1, 1, 1], seed,
                                          dtype=inputs.dtype)
      if replicas > 1:
        start = batch * tf.cast(context.replica_id_in_sync_group, tf.int32)
        noise = noise[start:start + batch]
    mask = tf.floor(keep_prob + noise)
    return inputs / keep_prob * mask


class ReluConvBn(tf.keras.layers.Layer):
  """ReLU, 1x1 convolution (optionally strided), batch norm."""

  def __init__(self, filters: int, strides: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.conv = conv1x1(filters, "conv", strides)
    self.bn = batch_norm("bn")

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    return self.bn(self.conv(tf.nn.relu(inputs)), training=training)


class SepConvStack(tf.keras.layers.Layer):
  """NASNet's "sep k": twice (ReLU, k x k separable conv, batch norm).

  Only the first separable convolution is strided.
  """

  def __init__(self, filters: int, kernel_size: int, strides: int = 1,
               **kwargs):
    super().__init__(**kwargs)
    self.convs = []
    self.bns = []
    for i in range(2):
      self.convs.append(tf.keras.layers.SeparableConv2D(
          filters, kernel_size, strides=strides if i == 0 else 1,
          padding="same", depth_multiplier=1, use_bias=False,
          depthwise_initializer=kernel_initializer(),
          pointwise_initializer=kernel_initializer(), name=f"sep_{i}"))
      self.bns.append(batch_norm(f"bn_{i}"))

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    net = inputs
    for conv, bn in zip(self.convs, self.bns):
      net = bn(conv(tf.nn.relu(net)), training=training)
    return net


class FactorizedReduction(tf.keras.layers.Layer):
  """Halves the spatial size with two offset strided 1x1 paths (no info loss).

  Expects an input that already went through a ReLU.
  """

  def __init__(self, filters: int, **kwargs):
    super().__init__(**kwargs)
    self.path1 = conv1x1(filters // 2, "path1_conv") if filters // 2 else None
    self.path2 = conv1x1(filters - filters // 2, "path2_conv")
    self.bn = batch_norm("bn")

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    even, shifted_even = _even_pixels(inputs)
    paths = [self.path2(shifted_even)]
    if self.path1 is not None:
      paths.insert(0, self.path1(even))
    return self.bn(tf.concat(paths, axis=-1), training=training)


def _even_pixels(inputs: tf.Tensor):
  """(inputs[:, ::2, ::2], the same one pixel down and right, zero-padded).

  When height and width are even and known, these are two channel blocks
  of space_to_depth: the same values as the strided slices, whose gradient
  (StridedSliceGrad) took a tenth of a tower's training step on the CPU.
  """
  height, width, channels = inputs.shape[1:]
  if None in (height, width, channels) or height % 2 or width % 2:
    shifted = tf.pad(inputs, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]
    return inputs[:, ::2, ::2, :], shifted[:, ::2, ::2, :]
  # Channel blocks of space_to_depth: (row offset, column offset) = (0, 0),
  # (0, 1), (1, 0), (1, 1).
  blocks = tf.nn.space_to_depth(inputs, 2)
  size = [-1, -1, -1, channels]
  return (tf.slice(blocks, [0, 0, 0, 0], size),
          tf.slice(blocks, [0, 0, 0, 3 * channels], size))


class _Pool(tf.keras.layers.Layer):
  """3x3 average or max pooling, SAME padding."""

  def __init__(self, kind: str, strides: int, **kwargs):
    super().__init__(**kwargs)
    cls = (tf.keras.layers.AveragePooling2D if kind == "avg" else
           tf.keras.layers.MaxPooling2D)
    self.pool = cls(3, strides=strides, padding="same", name="pool")

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    del training
    return self.pool(inputs)


def make_op(op: str, filters: int, strides: int, name: str):
  """Returns the layer for one NASNet-A op name, or None for the identity."""
  if op in ("sep3", "sep5", "sep7"):
    return SepConvStack(filters, int(op[-1]), strides, name=name)
  if op in ("avg3", "max3"):
    return _Pool(op[:3], strides, name=name)
  if op == "id":
    # A strided identity needs a projection (not used by NASNet-A itself).
    return ReluConvBn(filters, strides, name=name) if strides > 1 else None
  raise ValueError(f"unknown NASNet op {op!r}")
