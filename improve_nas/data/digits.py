"""The UCI handwritten digits that scikit-learn ships, as a TFDS dataset.

1,797 grayscale 8x8 images of the digits 0-9 (pixel values 0-16 in the
original, stored here as uint8 0-255). The data file comes with scikit-learn,
so preparing the dataset needs no network. The split is fixed: a seeded
permutation, the first 1,437 examples for `train`, the last 360 for `test`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

__all__ = ["SklearnDigits", "NAME", "NUM_TEST"]

NAME = "sklearn_digits"
NUM_TEST = 360
_SPLIT_SEED = 20190417


def _load_arrays():
  """(images uint8 [1797, 8, 8, 1], labels int64 [1797]) in a fixed order."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  order = np.random.RandomState(_SPLIT_SEED).permutation(len(images))
  return images[order][..., None], digits.target[order].astype(np.int64)


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """UCI ML hand-written digits (scikit-learn's copy), prepared offline."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://archive.ics.uci.edu/dataset/80",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: scikit-learn ships the data.
    images, labels = _load_arrays()
    cut = len(images) - NUM_TEST
    return {
        "train": self._generate_examples(images[:cut], labels[:cut], 0),
        "test": self._generate_examples(images[cut:], labels[cut:], cut),
    }

  def _generate_examples(self, images, labels, offset):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield offset + i, {"image": image, "label": int(label)}
