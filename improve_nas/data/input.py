"""tf.data input pipelines for adanet: decoding, resizing, augmentation.

Training examples get the paper's CIFAR augmentation, on the fly: zero-pad by
4 pixels to 40x40, random 32x32 crop, random horizontal flip, Cutout 16x16.
The pad and the Cutout side are given for 32x32 images and scale with the
configured image size (at 16x16: pad 2, Cutout 8). Every image is normalised
to [-1, 1] first, so padding and Cutout fill with 0, the middle of the range.
Evaluation normalises only and is deterministic.

Randomness is stateless: each training example draws its crop, flip and
Cutout from its own seed, taken from a stream seeded by the input_fn's seed.
The same seed gives the same batches; adanet calls the input_fn again every
iteration, and `make_input_fn`'s `seed_fn` gives each call its own seed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from improve_nas.builder import IMAGE_KEY

__all__ = ["PipelineConfig", "make_input_fn", "preprocess", "augment",
           "cutout", "scaled"]

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


def preprocess(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 image -> float32 in [-1, 1] at image_size x image_size."""
  image = tf.cast(image, tf.float32) * (2.0 / 255.0) - 1.0
  if image.shape[0] != image_size or image.shape[1] != image_size:
    image = tf.image.resize(image, [image_size, image_size])
    image = tf.clip_by_value(image, -1.0, 1.0)
  return image


def cutout(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """Zeroes one size x size square placed uniformly inside the image."""
  height, width = image.shape[0], image.shape[1]
  top = tf.random.stateless_uniform([], seed, minval=0,
                                    maxval=height - size + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], seed[::-1], minval=0,
                                     maxval=width - size + 1, dtype=tf.int32)
  corner = tf.stack([top, left])
  rows = tf.range(height)
  cols = tf.range(width)
  inside = ((rows[:, None] >= corner[0]) & (rows[:, None] < corner[0] + size)
            & (cols[None, :] >= corner[1]) & (cols[None, :] < corner[1] + size))
  return image * tf.cast(~inside, image.dtype)[:, :, None]


def augment(image: tf.Tensor, image_size: int, seed: tf.Tensor,
            random_flip: bool = True, cutout_size: int = 0) -> tf.Tensor:
  """Pad + random crop, optional flip and Cutout of one normalised image.

  Args:
    image: float32 [image_size, image_size, C] in [-1, 1].
    image_size: the image's side.
    seed: int32/int64 [2], this example's seed.
    random_flip: flip left-right with probability 1/2.
    cutout_size: Cutout side at 32x32 (scaled to image_size); 0 disables.
  """
  crop_seed, flip_seed, cutout_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  pad = scaled(PAD, image_size)
  channels = image.shape[-1]
  image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
  image = tf.image.stateless_random_crop(
      image, [image_size, image_size, channels], seed=crop_seed)
  if random_flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
  side = min(scaled(cutout_size, image_size), image_size)
  if side:
    image = cutout(image, side, cutout_seed)
  return image


def make_input_fn(source, config: PipelineConfig,
                  seed_fn: Optional[Callable[[], int]] = None) -> Callable:
  """An Estimator input_fn over one split of a `datasets.Source`.

  Args:
    source: the dataset (see `improve_nas.data.datasets.load_source`).
    config: the pipeline settings.
    seed_fn: returns the shuffle/augmentation seed each time the input_fn is
      called (adanet calls it again every iteration); defaults to config.seed.
  """

  def input_fn(params=None):
    del params
    seed = seed_fn() if seed_fn else config.seed
    ds = source.read(config.split, shuffle_files=config.training, seed=seed)
    ds = ds.map(lambda ex: (ex["image"], ex["label"]))
    if not config.training:
      ds = ds.map(lambda image, label: (
          {IMAGE_KEY: preprocess(image, config.image_size)}, label),
                  num_parallel_calls=tf.data.AUTOTUNE)
      return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)

    # Shuffle the small uint8 images, before they become float32.
    ds = ds.shuffle(config.shuffle_buffer, seed=seed,
                    reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
    ds = tf.data.Dataset.zip((ds, seeds))

    def train_example(example, example_seed):
      image, label = example
      image = augment(preprocess(image, config.image_size),
                      config.image_size, example_seed,
                      random_flip=config.random_flip,
                      cutout_size=config.cutout_size)
      return {IMAGE_KEY: image}, label

    ds = ds.map(train_example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(config.batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)

  return input_fn
