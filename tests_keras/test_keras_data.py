"""The embedded digits on the Keras engine's stack (TFDS 4.9.10 on Python
3.12 / 3.13): a machine that never ran the adanet engine prepares them from
nothing."""

import numpy as np

from improve_nas.data import datasets, digits


def test_the_digits_are_prepared_in_an_empty_data_dir(tmp_path):
  source = datasets.load_source(digits.NAME, str(tmp_path))
  assert source.info.num_classes == 10
  assert source.info.split_sizes == {"train": 1437, "test": digits.NUM_TEST}
  labels = [int(ex["label"]) for ex in source.read("test")]
  assert len(labels) == digits.NUM_TEST
  assert set(np.unique(labels)) == set(range(10))
  assert (tmp_path / digits.NAME).is_dir()
