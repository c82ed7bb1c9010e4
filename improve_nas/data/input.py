"""tf.data input pipelines for adanet: decoding, resizing, augmentation.

Training examples get the paper's CIFAR augmentation, on the fly: zero-pad by
4 pixels to 40x40, random 32x32 crop, random horizontal flip, Cutout 16x16.
The pad and the Cutout side are given for 32x32 images and scale with the
configured image size (at 16x16: pad 2, Cutout 8). Every image is normalised
to [-1, 1] first, so padding and Cutout fill with 0, the middle of the range.
Evaluation normalises only and is deterministic.

Randomness is stateless: each training batch is augmented with a seed from a
stream seeded by the input_fn's seed, and each image in it draws its own crop,
flip and Cutout. The same seed gives the same batches; adanet calls the input_fn again every
iteration, and `make_input_fn`'s `seed_fn` gives each call its own seed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from improve_nas import mirrored

__all__ = ["IMAGE_KEY", "PipelineConfig", "make_input_fn", "preprocess",
           "augment", "cutout", "scaled", "without_tuning_thread"]

# The feature the towers read: {IMAGE_KEY: float32 [batch, size, size,
# channels]} in [-1, 1]; also the input of the exported SavedModel.
IMAGE_KEY = "image"

# The paper's sizes, for 32x32 images.
REFERENCE_SIZE = 32
PAD = 4


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """How examples of one split become batches."""

  split: str
  image_size: int
  batch_size: int
  training: bool = False      # augment, shuffle and repeat forever
  random_flip: bool = True
  cutout_size: int = 0        # side at 32x32, scaled to image_size; 0 = off
  shuffle_buffer: int = 10_000
  seed: Optional[int] = None


def scaled(pixels_at_32: int, image_size: int) -> int:
  """A size given for 32x32 images, at `image_size` (>= 1 unless 0)."""
  if pixels_at_32 <= 0:
    return 0
  return max(1, round(pixels_at_32 * image_size / REFERENCE_SIZE))


def preprocess(images: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 image(s) [..., H, W, C] -> float32 in [-1, 1] at image_size^2."""
  images = tf.cast(images, tf.float32) * (2.0 / 255.0) - 1.0
  if images.shape[-3] != image_size or images.shape[-2] != image_size:
    images = tf.image.resize(images, [image_size, image_size])
    images = tf.clip_by_value(images, -1.0, 1.0)
  return images


def _batched(fn):
  """Lets a function of [B, H, W, C] images also take one [H, W, C] image."""

  def wrapper(images, *args, **kwargs):
    if images.shape.rank == 3:
      return fn(images[None], *args, **kwargs)[0]
    return fn(images, *args, **kwargs)

  wrapper.__doc__ = fn.__doc__
  return wrapper


@_batched
def cutout(images: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """Zeroes one size x size square, placed uniformly inside each image."""
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  top = tf.random.stateless_uniform([batch, 1], seed, minval=0,
                                    maxval=height - size + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([batch, 1], seed[::-1], minval=0,
                                     maxval=width - size + 1, dtype=tf.int32)
  rows = tf.range(height)[None, :]
  cols = tf.range(width)[None, :]
  in_rows = (rows >= top) & (rows < top + size)     # [batch, height]
  in_cols = (cols >= left) & (cols < left + size)   # [batch, width]
  inside = in_rows[:, :, None] & in_cols[:, None, :]
  return images * tf.cast(~inside, images.dtype)[..., None]


@_batched
def augment(images: tf.Tensor, image_size: int, seed: tf.Tensor,
            random_flip: bool = True, cutout_size: int = 0) -> tf.Tensor:
  """Pad + random crop, optional flip and Cutout, each image on its own.

  Args:
    images: float32 [B, image_size, image_size, C] (or one [H, W, C] image)
      in [-1, 1].
    image_size: the images' side.
    seed: int32/int64 [2]; the same seed gives the same output.
    random_flip: flip each image left-right with probability 1/2.
    cutout_size: Cutout side at 32x32 (scaled to image_size); 0 disables.
  """
  crop_seed, flip_seed, cutout_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  batch = tf.shape(images)[0]
  pad = scaled(PAD, image_size)
  padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  offsets = tf.random.stateless_uniform(
      [batch, 2], crop_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
  window = tf.range(image_size)[None, :]
  rows = offsets[:, :1] + window   # [batch, image_size]
  cols = offsets[:, 1:] + window
  images = tf.gather(padded, rows, axis=1, batch_dims=1)
  images = tf.gather(images, cols, axis=2, batch_dims=1)
  if random_flip:
    flip = tf.random.stateless_uniform([batch], flip_seed) < 0.5
    images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]),
                      images)
  side = min(scaled(cutout_size, image_size), image_size)
  if side:
    images = cutout(images, side, cutout_seed)
  return images


def make_input_fn(source, config: PipelineConfig,
                  seed_fn: Optional[Callable[[], int]] = None) -> Callable:
  """An Estimator input_fn over one split of a `datasets.Source`.

  Args:
    source: the dataset (see `improve_nas.data.datasets.load_source`).
    config: the pipeline settings.
    seed_fn: returns the shuffle/augmentation seed each time the input_fn is
      called (adanet calls it again every iteration), or (seed, batches to
      skip) to resume a stream part-way; defaults to config.seed.
  """

  def input_fn(params=None, input_context=None):
    """`input_context`: given by tf.estimator under a distribution strategy,
    whose replicas take consecutive elements. Training batches are then
    made, skipped and augmented whole, exactly as on one device, and each is
    split into the replicas' shares: the replicas of one step together see
    the single-device run's global batch, augmentations included."""
    del params
    seed = seed_fn() if seed_fn else config.seed
    seed, skip = seed if isinstance(seed, tuple) else (seed, 0)
    replicas = input_context.num_replicas_in_sync if input_context else 1
    ds = source.read(config.split, shuffle_files=config.training, seed=seed)
    ds = ds.map(lambda ex: (ex["image"], ex["label"]))
    if not config.training:
      ds = ds.map(lambda image, label: (
          {IMAGE_KEY: preprocess(image, config.image_size)}, label),
                  num_parallel_calls=tf.data.AUTOTUNE)
      return without_tuning_thread(
          ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE))

    # Shuffle the small uint8 images, before they become float32, then
    # augment whole batches at once (each image still draws its own crop,
    # flip and Cutout).
    ds = ds.shuffle(config.shuffle_buffer, seed=seed,
                    reshuffle_each_iteration=True).repeat()
    ds = ds.batch(config.batch_size, drop_remainder=True)
    seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
    ds = tf.data.Dataset.zip((ds, seeds))
    if skip:  # before augmentation: skipped batches cost only their reading
      ds = ds.skip(skip)

    def train_batch(batch, batch_seed):
      images, labels = batch
      images = augment(preprocess(images, config.image_size),
                       config.image_size, batch_seed,
                       random_flip=config.random_flip,
                       cutout_size=config.cutout_size)
      return {IMAGE_KEY: images}, labels

    ds = ds.map(train_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if replicas > 1:
      ds = ds.rebatch(
          mirrored.replica_batch_size(config.batch_size, replicas),
          drop_remainder=True)
    return without_tuning_thread(ds.prefetch(tf.data.AUTOTUNE))

  return input_fn


def without_tuning_thread(ds: tf.data.Dataset) -> tf.data.Dataset:
  """`ds` without tf.data's model-based autotuning.

  With it, each iterator runs a background thread that re-plans the
  pipeline's parallelism at growing intervals, up to 10 s apart, and on
  TensorFlow 2.15 destroying the iterator of an Estimator's session waits
  for that thread's next wake-up: closing a training session took 0 to 9 s
  (measured in the demo's search, where it made boundaries between
  iterations vary from 10 to 21 s). Without it, AUTOTUNE still works where
  the pipeline uses it: a map runs as many calls at once as cores, and a
  prefetch buffer grows by itself. The batches are the same either way.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options)
