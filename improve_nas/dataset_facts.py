"""What a config trains on: its dataset, loaded once, and the towers' shape
and cost on it."""

from __future__ import annotations

import dataclasses
from typing import Optional

import ml_collections

from improve_nas import config as config_lib
from improve_nas.data import datasets
from improve_nas.errors import ConfigError
from improve_nas.nasnet.arch import IMAGE_SIZE_RULE, ArchSpec, image_size_fits
from improve_nas.nasnet.counting import TowerCost, tower_cost

__all__ = ["DatasetFacts", "resolve_image_size"]


def resolve_image_size(c: ml_collections.ConfigDict,
                       info: datasets.DatasetInfo) -> int:
  """The side images are resized to: config.image_size, else the native one."""
  height, width, _ = info.image_shape
  if not c.image_size and (height is None or height != width):
    raise ConfigError(
        f"config.image_size=0: dataset {info.name!r} has images of varying or "
        f"non-square size {info.image_shape[:2]}; set --config.image_size to "
        f"{IMAGE_SIZE_RULE} (images are resized)")
  size = c.image_size or height
  if not image_size_fits(size):
    raise ConfigError(
        f"config.image_size={size}: dataset {info.name!r} has {size}-pixel "
        f"images; set --config.image_size to {IMAGE_SIZE_RULE} (they are "
        "resized)")
  return size


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
  """The dataset of a config and what its towers look like on it."""

  source: datasets.Source
  image_size: int
  aux_head_filters: tuple

  @classmethod
  def load(cls, c: ml_collections.ConfigDict,
           source: Optional[datasets.Source] = None) -> "DatasetFacts":
    """Loads (or takes) the dataset of `c` and checks its splits and image
    size.

    Raises:
      ConfigError: the dataset cannot be read, a split or the image size
        does not fit it.
    """
    source = source or datasets.load_source(c.dataset, c.data_dir or None)
    datasets.split_size(c.train_split, source.info, "train_split")
    datasets.split_size(c.eval_split, source.info, "eval_split")
    return cls(source, resolve_image_size(c, source.info),
               config_lib.aux_head_filters(c))

  @property
  def info(self) -> datasets.DatasetInfo:
    return self.source.info

  @property
  def num_classes(self) -> int:
    return self.info.num_classes

  @property
  def channels(self) -> int:
    return self.info.image_shape[-1]

  @property
  def tower_shape(self) -> tuple:
    """(classes, image size, channels) of the towers."""
    return (self.num_classes, self.image_size, self.channels)

  def params(self, arch: ArchSpec) -> int:
    """Trainable parameters of a member `arch` (its auxiliary head aside)."""
    return self.cost(arch).params

  def cost(self, arch: ArchSpec) -> TowerCost:
    """Parameters and multiply-adds of a tower `arch`."""
    return tower_cost(arch, *self.tower_shape,
                      aux_head_filters=self.aux_head_filters)
