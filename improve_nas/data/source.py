"""What every dataset gives the input pipeline: its info and its examples."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

__all__ = ["DatasetInfo", "Source", "resolve_split"]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the input pipeline need to know about a dataset."""

  name: str
  num_classes: int
  # Native (height, width, channels); height and width are None when the
  # images vary in size.
  image_shape: Tuple[Optional[int], Optional[int], int]
  split_sizes: Dict[str, int]   # examples per split
  origin: str                   # where the examples are read from

  @property
  def splits(self) -> Tuple[str, ...]:
    return tuple(self.split_sizes)


class Source:
  """A dataset to read: its `info` and its examples, split by split."""

  info: DatasetInfo

  def read(self, split: str, *, shuffle_files: bool = False,
           seed: Optional[int] = None) -> tf.data.Dataset:
    """{"image": uint8 [H, W, C], "label": int64} examples of `split`.

    `split` is a TFDS split spec ("train", "train[:90%]", "test+train[:1000]").
    With `shuffle_files`, files are read in a `seed`-dependent order.
    """
    raise NotImplementedError


def resolve_split(spec: str, shards: Dict[str, Sequence[int]]
                  ) -> List[Tuple[str, int, int]]:
  """A TFDS split spec as (split, first, end) example ranges.

  Args:
    spec: e.g. "train", "train[:90%]", "train[45000:]+test", "train[:2shard]".
    shards: examples in each file (shard) of each split.

  Raises:
    ValueError: a spec that does not parse, an unknown split, a bad slice.
  """
  split_dict = tfds.core.SplitDict([
      tfds.core.SplitInfo(name=name, shard_lengths=list(lengths), num_bytes=0)
      for name, lengths in shards.items()])
  ranges = []
  for x in tfds.core.ReadInstruction.from_spec(spec).to_absolute(split_dict):
    total = sum(shards[x.splitname])
    ranges.append((x.splitname, x.from_ or 0,
                   total if x.to is None else x.to))
  return ranges
