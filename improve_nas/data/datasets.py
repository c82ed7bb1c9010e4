"""Finding and preparing TFDS datasets by name."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import tensorflow_datasets as tfds

from improve_nas.data import digits
from improve_nas.errors import ConfigError

__all__ = ["DatasetInfo", "load_builder", "dataset_info"]

# Datasets that prepare themselves from files installed with a package, so
# they may be prepared on first use without a network.
_LOCAL = {digits.NAME: digits.SklearnDigits}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model needs to know about a dataset."""

  name: str
  num_classes: int
  image_shape: Tuple[int, int, int]  # native (height, width, channels)
  splits: Tuple[str, ...]


def load_builder(name: str, data_dir: Optional[str] = None):
  """A prepared TFDS builder for `name` in `data_dir` (TFDS's default if None).

  Embedded datasets are prepared on first use; others must be prepared.
  """
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  if name in _LOCAL:
    builder = _LOCAL[name](data_dir=data_dir)
    if not builder.is_prepared():
      builder.download_and_prepare()
    return builder
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(
        f"dataset {name!r} is not a TFDS dataset; use {digits.NAME!r} (embedded) "
        "or a TFDS image-classification dataset such as 'cifar10'") from None
  if not builder.is_prepared():
    raise ConfigError(
        f"dataset {name!r} is not prepared in {builder.data_dir!r}; prepare it on "
        f"a connected machine (`tfds build {name} --data_dir=DIR`) and pass "
        "--config.data_dir=DIR")
  return builder


def dataset_info(builder) -> DatasetInfo:
  """Classes, native image shape and splits of an image-classification set."""
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ConfigError(
        f"dataset {builder.name!r} has no 'image' and 'label' features; use an "
        "image-classification dataset")
  shape = tuple(features["image"].shape)
  return DatasetInfo(name=builder.name,
                     num_classes=int(features["label"].num_classes),
                     image_shape=shape,
                     splits=tuple(builder.info.splits.keys()))
