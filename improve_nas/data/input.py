"""tf.data input pipelines for adanet: decoding, resizing, augmentation."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from improve_nas.builder import IMAGE_KEY

__all__ = ["PipelineConfig", "make_input_fn", "preprocess", "augment"]


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """How examples of one split become batches."""

  split: str
  image_size: int
  batch_size: int
  training: bool = False      # augment, shuffle and repeat forever
  random_flip: bool = True
  cutout_size: int = 0        # pixels of the configured image; 0 disables
  seed: Optional[int] = None


def preprocess(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 image -> float32 in [-1, 1] at image_size x image_size."""
  image = tf.cast(image, tf.float32) / 255.0
  if image.shape[0] != image_size or image.shape[1] != image_size:
    image = tf.image.resize(image, [image_size, image_size])
  return image * 2.0 - 1.0


def augment(image: tf.Tensor, image_size: int, random_flip: bool,
            cutout_size: int) -> tf.Tensor:
  """Pad by size/8 then random crop, optional flip, Cutout (set to 0)."""
  pad = max(image_size // 8, 1)
  channels = image.shape[-1]
  image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
  image = tf.image.random_crop(image, [image_size, image_size, channels])
  if random_flip:
    image = tf.image.random_flip_left_right(image)
  if cutout_size:
    center = tf.random.uniform([2], 0, image_size, dtype=tf.int32)
    low = tf.maximum(center - cutout_size // 2, 0)
    high = tf.minimum(center - cutout_size // 2 + cutout_size, image_size)
    rows = tf.range(image_size)
    inside_r = (rows >= low[0]) & (rows < high[0])
    inside_c = (rows >= low[1]) & (rows < high[1])
    mask = tf.cast(~(inside_r[:, None] & inside_c[None, :]), image.dtype)
    image = image * mask[:, :, None]
  return image


def make_input_fn(builder, config: PipelineConfig,
                  seed_fn: Optional[Callable[[], int]] = None) -> Callable:
  """An Estimator input_fn over one split of a prepared TFDS builder.

  Args:
    builder: a prepared TFDS builder with "image" and "label" features.
    config: the pipeline settings.
    seed_fn: returns the shuffle/augmentation seed each time the input_fn is
      called (adanet calls it again every iteration); defaults to config.seed.
  """

  def input_fn(params=None):
    del params
    seed = seed_fn() if seed_fn else config.seed
    read_config = None
    if seed is not None:
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      read_config = tfds.ReadConfig(shuffle_seed=seed)
    ds = builder.as_dataset(split=config.split, shuffle_files=config.training,
                            read_config=read_config)

    def to_example(example):
      image = preprocess(example["image"], config.image_size)
      if config.training:
        image = augment(image, config.image_size, config.random_flip,
                        config.cutout_size)
      return {IMAGE_KEY: image}, example["label"]

    if config.training:
      ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(config.batch_size, drop_remainder=config.training)
    return ds.prefetch(tf.data.AUTOTUNE)

  return input_fn
