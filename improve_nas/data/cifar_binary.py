"""CIFAR-10 / CIFAR-100 from the official binary distribution files.

Sites that already keep `cifar-10-binary.tar.gz` or `cifar-100-binary.tar.gz`
extracted can read them directly: point `--config.data_dir` at the directory
that holds `cifar-10-batches-bin/` or `cifar-100-binary/` (or at that folder
itself). Layout of every record, as published with the dataset:

- CIFAR-10: 1 label byte (0-9), then 3,072 pixel bytes;
- CIFAR-100: 1 coarse label byte (0-19), 1 fine label byte (0-99), then 3,072
  pixel bytes; the label used is the fine one, as in TFDS's `cifar100`.

The pixels are 1,024 red, then 1,024 green, then 1,024 blue bytes, each plane
row-major 32x32. The python distribution (`cifar-10-batches-py`,
`cifar-100-python`) is pickled and unpickling can execute code, so it is
refused with a pointer to the binary files instead of being loaded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from improve_nas.data.source import DatasetInfo, Source, resolve_split
from improve_nas.errors import ConfigError

__all__ = ["Variant", "VARIANTS", "CifarBinarySource", "find", "PIXELS"]

SIDE = 32
PIXELS = SIDE * SIDE * 3
_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str                       # the TFDS name users pass as dataset
  folder: str                     # what the binary archive extracts to
  archive: str
  pickle_folder: str              # the python distribution's folder
  pickle_files: Tuple[str, ...]   # files only the python distribution has
  label_bytes: int
  label_classes: Tuple[int, ...]  # classes of each label byte
  files: Dict[str, Tuple[str, ...]]

  @property
  def record_bytes(self) -> int:
    return self.label_bytes + PIXELS

  @property
  def num_classes(self) -> int:
    return self.label_classes[-1]


VARIANTS = {
    "cifar10": Variant(
        name="cifar10", folder="cifar-10-batches-bin",
        archive="cifar-10-binary.tar.gz", pickle_folder="cifar-10-batches-py",
        pickle_files=("data_batch_1", "test_batch", "batches.meta"),
        label_bytes=1, label_classes=(10,),
        files={"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
               "test": ("test_batch.bin",)}),
    "cifar100": Variant(
        name="cifar100", folder="cifar-100-binary",
        archive="cifar-100-binary.tar.gz", pickle_folder="cifar-100-python",
        pickle_files=("train", "test", "meta"),
        label_bytes=2, label_classes=(20, 100),
        files={"train": ("train.bin",), "test": ("test.bin",)}),
}

def find(name: str, data_dir: str) -> Optional["CifarBinarySource"]:
  """The binary files of CIFAR `name` under `data_dir`, or None if absent.

  Raises:
    ConfigError: only the pickled distribution is there, or a binary file is
      missing, truncated or corrupt.
  """
  variant = VARIANTS[name]
  for directory in (os.path.join(data_dir, variant.folder), data_dir):
    if any(os.path.exists(os.path.join(directory, f))
           for split in variant.files.values() for f in split):
      return CifarBinarySource(variant, directory)
  for directory in (os.path.join(data_dir, variant.pickle_folder), data_dir):
    if any(os.path.isfile(os.path.join(directory, f))
           for f in variant.pickle_files):
      raise ConfigError(
          f"{directory} holds the python (pickle) distribution of {name}, "
          "which improve_nas never loads because unpickling can execute code; "
          f"download the binary version {variant.archive} from {_URL} and "
          f"extract it into {data_dir}")
  return None


class CifarBinarySource(Source):
  """CIFAR examples read with tf.data straight from the binary files.

  Every file is checked when the source is made: present, a whole number of
  records, and every label byte in range.
  """

  def __init__(self, variant: Variant, directory: str):
    self.variant = variant
    self.directory = directory
    self._records: Dict[str, List[Tuple[str, int]]] = {}
    for split, names in variant.files.items():
      self._records[split] = [
          (path, _check_file(path, variant))
          for path in (os.path.join(directory, n) for n in names)]
    self.info = DatasetInfo(
        name=variant.name, num_classes=variant.num_classes,
        image_shape=(SIDE, SIDE, 3),
        split_sizes={s: sum(n for _, n in files)
                     for s, files in self._records.items()},
        origin=f"{variant.name} binary files in {directory}")

  def file_slices(self, split: str) -> List[Tuple[str, int, int, int]]:
    """(path, first record, end record, records) of each file `split` reads."""
    ranges = resolve_split(split, {s: [n for _, n in files]
                                   for s, files in self._records.items()})
    slices = []
    for name, start, stop in ranges:
      offset = 0
      for path, n in self._records[name]:
        first = max(start - offset, 0)
        end = min(stop - offset, n)
        if first < end:
          slices.append((path, first, end, n))
        offset += n
    return slices

  def read(self, split: str, *, shuffle_files: bool = False,
           seed: Optional[int] = None) -> tf.data.Dataset:
    slices = self.file_slices(split)
    size = self.variant.record_bytes
    files = tf.data.Dataset.from_tensor_slices((
        tf.constant([path for path, _, _, _ in slices]),
        tf.constant([first * size for _, first, _, _ in slices], tf.int64),
        tf.constant([(n - end) * size for _, _, end, n in slices], tf.int64)))

    def records(path, header, footer):
      return tf.data.FixedLengthRecordDataset(
          path, size, header_bytes=header, footer_bytes=footer,
          buffer_size=256 * 1024)

    if shuffle_files and len(slices) > 1:
      files = files.shuffle(len(slices), seed=seed)
      ds = files.interleave(records, cycle_length=len(slices),
                            num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    else:
      ds = files.flat_map(records)
    # Decoding a few hundred records at once costs less per record.
    ds = ds.batch(256).map(self._decode, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.unbatch()

  def _decode(self, records):
    raw = tf.io.decode_raw(records, tf.uint8)  # [n, record_bytes]
    label = tf.cast(raw[:, self.variant.label_bytes - 1], tf.int64)
    planes = tf.reshape(raw[:, self.variant.label_bytes:], [-1, 3, SIDE, SIDE])
    image = tf.transpose(planes, [0, 2, 3, 1])
    return {"image": image, "label": label}


def _check_file(path: str, variant: Variant) -> int:
  """Number of records in `path`; ConfigError if missing or damaged."""
  fix = f"re-extract {variant.archive} (from {_URL})"
  if not os.path.isfile(path):
    raise ConfigError(f"CIFAR binary file {path} is missing; {fix}")
  size = os.path.getsize(path)
  record = variant.record_bytes
  if size == 0 or size % record:
    raise ConfigError(
        f"CIFAR binary file {path} is truncated or corrupt: {size:,} bytes is "
        f"not a whole number of {record:,}-byte records; {fix}")
  try:
    data = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, record)
    labels = np.asarray(data[:, :variant.label_bytes])
  except OSError as e:
    raise ConfigError(f"CIFAR binary file {path} cannot be read ({e}); "
                      f"{fix}") from None
  for column, classes in enumerate(variant.label_classes):
    bad = np.flatnonzero(labels[:, column] >= classes)
    if bad.size:
      raise ConfigError(
          f"CIFAR binary file {path} is corrupt: record {int(bad[0])} has "
          f"label byte {int(labels[bad[0], column])} (must be < {classes}); "
          f"{fix}")
  return size // record
