"""Finding datasets by name: TFDS builders and the CIFAR binary files.

`load_source(name, data_dir)` returns a `Source`: the dataset's `DatasetInfo`
(classes, native image shape, split sizes) and a `read(split, ...)` that gives
a tf.data.Dataset of {"image": uint8 [H, W, C], "label": int64} examples.

Where the data comes from, in order:
1. the embedded datasets (`sklearn_digits`), prepared on first use offline;
2. for `cifar10` / `cifar100`, the official binary distribution files if
   `data_dir` holds them (`cifar-10-batches-bin/`, `cifar-100-binary/`);
3. a TFDS dataset prepared in `data_dir` (TFDS's own default when unset).
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from improve_nas.data import cifar_binary
from improve_nas.data import digits
from improve_nas.data.source import DatasetInfo, Source, resolve_split
from improve_nas.errors import ConfigError

__all__ = ["DatasetInfo", "Source", "TfdsSource", "load_source",
           "split_size", "default_data_dir"]

# Datasets that prepare themselves from files installed with a package, so
# they may be prepared on first use without a network.
_LOCAL = {digits.NAME: digits.SklearnDigits}


class TfdsSource(Source):
  """A prepared TFDS builder with "image" and "label" features."""

  def __init__(self, builder):
    self.builder = builder
    features = builder.info.features
    if "image" not in features or "label" not in features:
      raise ConfigError(
          f"dataset {builder.name!r} has features {', '.join(features)}, not "
          "'image' and 'label'; use an image-classification dataset")
    label = features["label"]
    if not hasattr(label, "num_classes"):
      raise ConfigError(
          f"dataset {builder.name!r}: its 'label' feature is not a class "
          "label; use an image-classification dataset")
    shape = tuple(features["image"].shape)
    if len(shape) != 3 or shape[-1] not in (1, 3):
      raise ConfigError(
          f"dataset {builder.name!r} has images of shape {shape}; improve_nas "
          "needs [height, width, 1 or 3] images")
    self.info = DatasetInfo(
        name=builder.name, num_classes=int(label.num_classes),
        image_shape=shape,
        split_sizes={k: int(v.num_examples)
                     for k, v in builder.info.splits.items()},
        origin=f"TFDS {builder.name} {builder.version} in {builder.data_dir}")

  def read(self, split, *, shuffle_files=False, seed=None):
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    ds = self.builder.as_dataset(split=split, shuffle_files=shuffle_files,
                                 read_config=read_config)
    return ds.map(lambda ex: {"image": ex["image"],
                              "label": tf.cast(ex["label"], tf.int64)},
                  num_parallel_calls=tf.data.AUTOTUNE)


def default_data_dir() -> str:
  """TFDS's default data directory (honours $TFDS_DATA_DIR)."""
  return os.path.expanduser(
      os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def load_source(name: str, data_dir: Optional[str] = None) -> Source:
  """The dataset `name`, from `data_dir` or TFDS's default directory.

  Raises:
    ConfigError: unknown dataset, data not prepared, unreadable or corrupt
      files; one line naming the directory or file and the fix.
  """
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  if data_dir is not None:
    _check_directory(data_dir)
  if name in _LOCAL:
    builder = _LOCAL[name](data_dir=data_dir)
    if not builder.is_prepared():
      builder.download_and_prepare()
    return TfdsSource(builder)
  if name in cifar_binary.VARIANTS and data_dir is not None:
    source = cifar_binary.find(name, data_dir)
    if source is not None:
      return source
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(
        f"config.dataset={name!r} is not a TFDS dataset; use {digits.NAME!r} "
        "(embedded), 'cifar10', 'cifar100' or another TFDS image-"
        "classification dataset name") from None
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.dataset={name!r}: {_first_line(e)}") from None
  if not builder.is_prepared():
    searched = data_dir or default_data_dir()
    raise ConfigError(_not_prepared_message(name, searched,
                                            str(builder.data_dir)))
  return TfdsSource(builder)


def _not_prepared_message(name: str, searched: str, version_dir: str) -> str:
  fix = (f"on a machine with internet run `tfds build {name} "
         f"--data_dir={searched}` and copy that directory here")
  if name in cifar_binary.VARIANTS:
    folder = cifar_binary.VARIANTS[name].folder
    fix += (f", or extract the official binary files so that "
            f"{os.path.join(searched, folder)} exists")
  else:
    fix += (", or place the dataset's manual files as its TFDS page says and "
            f"run `tfds build {name} --data_dir={searched} --manual_dir=DIR`")
  return (f"dataset {name!r} is not prepared: searched {version_dir} "
          f"(data_dir {searched}); {fix}; then pass --config.data_dir="
          f"{searched}")


def _check_directory(data_dir: str) -> None:
  if not os.path.exists(data_dir):
    raise ConfigError(
        f"config.data_dir={data_dir!r} does not exist; give the directory "
        "that holds the prepared data (or leave it empty for TFDS's default)")
  if not os.path.isdir(data_dir):
    raise ConfigError(
        f"config.data_dir={data_dir!r} is a file, not a directory; give the "
        "directory that holds the prepared data")
  if not os.access(data_dir, os.R_OK | os.X_OK):
    raise ConfigError(
        f"config.data_dir={data_dir!r} is not readable by this user; fix its "
        "permissions or copy the data elsewhere")


def split_size(spec: str, info: DatasetInfo, field: str = "split") -> int:
  """Examples in split spec `spec` (e.g. "train[:90%]"); ConfigError if bad."""
  try:
    ranges = resolve_split(spec, {k: [v] for k, v in info.split_sizes.items()})
  except (ValueError, KeyError, TypeError, AssertionError) as e:
    raise ConfigError(
        f"config.{field}={spec!r}: {_first_line(e)} (dataset {info.name!r} has "
        f"splits {_describe(info)}; slices look like 'train[:90%]' or "
        "'train[45000:]')") from None
  total = sum(end - first for _, first, end in ranges)
  if total <= 0:
    raise ConfigError(
        f"config.{field}={spec!r} selects no examples (dataset {info.name!r} "
        f"has splits {_describe(info)}); choose a non-empty slice")
  return total


def _describe(info: DatasetInfo) -> str:
  return ", ".join(f"{k} ({v:,})" for k, v in info.split_sizes.items())


def _first_line(e: BaseException) -> str:
  text = str(e).strip().strip("'\"")
  return text.splitlines()[0] if text else type(e).__name__
