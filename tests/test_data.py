"""Datasets and the input pipeline: CIFAR binary files, TFDS (mocked CIFAR
metadata and examples), split specs, the paper's augmentation."""

import os
import pickle
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from improve_nas.data import cifar_binary
from improve_nas.data import datasets
from improve_nas.data.input import (PipelineConfig, augment, cutout,
                                    make_input_fn, preprocess, scaled)
from improve_nas.errors import ConfigError


# --- CIFAR binary files ------------------------------------------------------

def _records(n, label_classes, rng):
  """n records in the CIFAR binary layout, with the images as HWC arrays."""
  labels = np.stack([rng.randint(0, k, n) for k in label_classes], axis=1)
  images = rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
  planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # R, G, B planes
  data = np.concatenate([labels.astype(np.uint8), planes], axis=1)
  assert data.shape == (n, len(label_classes) + 3072)
  return data.tobytes(), images, labels[:, -1]


def write_cifar(root, name, counts, seed=0):
  """Writes a small CIFAR binary distribution; returns {split: (imgs, lbls)}."""
  variant = cifar_binary.VARIANTS[name]
  folder = os.path.join(root, variant.folder)
  os.makedirs(folder, exist_ok=True)
  rng = np.random.RandomState(seed)
  truth = {}
  for split, files in variant.files.items():
    images, labels = [], []
    for filename, n in zip(files, counts[split]):
      data, imgs, lbls = _records(n, variant.label_classes, rng)
      with open(os.path.join(folder, filename), "wb") as f:
        f.write(data)
      images.append(imgs)
      labels.append(lbls)
    truth[split] = (np.concatenate(images), np.concatenate(labels))
  return folder, truth


def _read_all(source, split, **kwargs):
  images, labels = [], []
  for ex in source.read(split, **kwargs):
    images.append(ex["image"].numpy())
    labels.append(int(ex["label"]))
  return np.stack(images), np.array(labels)


CIFAR10_COUNTS = {"train": [3, 4, 2, 5, 3], "test": [6]}
CIFAR100_COUNTS = {"train": [9], "test": [5]}


def test_cifar10_binary_layout_read_back(tmp_path):
  _, truth = write_cifar(str(tmp_path), "cifar10", CIFAR10_COUNTS)
  source = datasets.load_source("cifar10", str(tmp_path))
  assert isinstance(source, cifar_binary.CifarBinarySource)
  assert source.info.num_classes == 10
  assert source.info.image_shape == (32, 32, 3)
  assert source.info.split_sizes == {"train": 17, "test": 6}
  for split in ("train", "test"):
    images, labels = _read_all(source, split)
    np.testing.assert_array_equal(images, truth[split][0])
    np.testing.assert_array_equal(labels, truth[split][1])
  # Slices cross file boundaries; the red plane comes first in each record.
  images, labels = _read_all(source, "train[2:9]+test[-2:]")
  np.testing.assert_array_equal(
      images, np.concatenate([truth["train"][0][2:9], truth["test"][0][-2:]]))
  np.testing.assert_array_equal(
      labels, np.concatenate([truth["train"][1][2:9], truth["test"][1][-2:]]))
  assert datasets.split_size("train[:50%]", source.info) == 8


def test_cifar100_binary_uses_the_fine_label(tmp_path):
  folder, truth = write_cifar(str(tmp_path), "cifar100", CIFAR100_COUNTS)
  # data_dir may also be the extracted folder itself.
  source = datasets.load_source("cifar100", folder)
  assert source.info.num_classes == 100
  assert source.info.split_sizes == {"train": 9, "test": 5}
  images, labels = _read_all(source, "train")
  np.testing.assert_array_equal(images, truth["train"][0])
  np.testing.assert_array_equal(labels, truth["train"][1])
  with open(os.path.join(folder, "train.bin"), "rb") as f:
    first = f.read(3074)
  assert labels[0] == first[1] and first[0] < 20  # fine after coarse


def test_cifar_binary_file_order_shuffles_with_seed(tmp_path):
  write_cifar(str(tmp_path), "cifar10", CIFAR10_COUNTS)
  source = datasets.load_source("cifar10", str(tmp_path))
  _, plain = _read_all(source, "train")
  orders = [tuple(_read_all(source, "train", shuffle_files=True,
                            seed=s)[1]) for s in range(4)]
  assert sorted(orders[0]) == sorted(plain)
  assert len(set(orders)) > 1
  assert orders[1] == tuple(_read_all(source, "train", shuffle_files=True,
                                      seed=1)[1])


@pytest.mark.parametrize("damage,expected", [
    ("truncate", "not a whole number of 3,073-byte records"),
    ("empty", "not a whole number"),
    ("label", "label byte 200"),
    ("missing", "is missing"),
])
def test_damaged_binary_file_names_the_file(tmp_path, damage, expected):
  folder, _ = write_cifar(str(tmp_path), "cifar10", CIFAR10_COUNTS)
  path = os.path.join(folder, "data_batch_3.bin")
  data = bytearray(open(path, "rb").read())
  if damage == "truncate":
    data = data[:-100]
  elif damage == "empty":
    data = b""
  elif damage == "label":
    data[3073] = 200  # the second record's label
  if damage == "missing":
    os.remove(path)
  else:
    with open(path, "wb") as f:
      f.write(data)
  with pytest.raises(ConfigError) as e:
    datasets.load_source("cifar10", str(tmp_path))
  message = str(e.value)
  assert path in message and expected in message and "\n" not in message
  assert "cifar-10-binary.tar.gz" in message


class _Trap:
  """Unpickling this object writes a marker file: proof it was loaded."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


@pytest.mark.parametrize("name,folder,filename", [
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ("cifar100", "cifar-100-python", "train"),
])
def test_pickle_distribution_refused_without_loading(tmp_path, name, folder,
                                                     filename):
  os.makedirs(tmp_path / folder)
  marker = str(tmp_path / "unpickled")
  with open(tmp_path / folder / filename, "wb") as f:
    pickle.dump(_Trap(marker), f)
  for data_dir in (tmp_path, tmp_path / folder):
    with pytest.raises(ConfigError, match="pickle") as e:
      datasets.load_source(name, str(data_dir))
    assert cifar_binary.VARIANTS[name].archive in str(e.value)
  assert not os.path.exists(marker)


# --- TFDS --------------------------------------------------------------------

def fake_prepared_tfds(data_dir, name, sizes):
  """Writes the TFDS metadata of a prepared `name` (the examples are mocked).

  With `tfds.testing.mock_data(data_dir=data_dir)` the builder then reads its
  real features and these split sizes from disk, as for a prepared dataset.
  """
  builder = tfds.builder(name, data_dir=data_dir)
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=k, shard_lengths=[v], num_bytes=0)
      for k, v in sizes.items()]))
  os.makedirs(builder.data_dir)
  builder.info.write_to_directory(builder.data_dir)


def mock_tfds(data_dir, num_examples):
  return tfds.testing.mock_data(num_examples=num_examples, data_dir=data_dir,
                                policy=tfds.testing.MockPolicy.USE_FILES)


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_tfds_cifar_info_and_pipeline(tmp_path, name, classes):
  fake_prepared_tfds(str(tmp_path), name, {"train": 500, "test": 100})
  with mock_tfds(str(tmp_path), num_examples=40):
    source = datasets.load_source(name, str(tmp_path))
    assert isinstance(source, datasets.TfdsSource)
    assert source.info.num_classes == classes
    assert source.info.image_shape == (32, 32, 3)
    assert source.info.split_sizes == {"train": 500, "test": 100}
    assert datasets.split_size("train[:90%]", source.info) == 450
    fn = make_input_fn(source, PipelineConfig(
        split="train[:90%]", image_size=32, batch_size=8, training=True,
        cutout_size=16, seed=1))
    images, labels = next(iter(fn()))
  assert images["image"].shape == (8, 32, 32, 3)
  assert images["image"].dtype == tf.float32 and labels.dtype == tf.int64
  assert np.all((labels.numpy() >= 0) & (labels.numpy() < classes))


def test_unprepared_tfds_dataset_says_where_and_how(tmp_path):
  with pytest.raises(ConfigError) as e:
    datasets.load_source("cifar10", str(tmp_path))
  message = str(e.value)
  assert "\n" not in message and str(tmp_path) in message
  assert f"tfds build cifar10 --data_dir={tmp_path}" in message
  assert "cifar-10-batches-bin" in message
  with pytest.raises(ConfigError) as e:
    datasets.load_source("mnist", str(tmp_path))
  assert "--manual_dir" in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.parametrize("name,data_dir,expected", [
    ("no_such_dataset_xyz", "", "is not a TFDS dataset"),
    ("cifar10", "missing", "does not exist"),
    ("cifar10", "a_file", "is a file"),
])
def test_bad_dataset_or_data_dir(tmp_path, name, data_dir, expected):
  (tmp_path / "a_file").write_text("x")
  path = str(tmp_path / data_dir) if data_dir else None
  with pytest.raises(ConfigError, match=expected):
    datasets.load_source(name, path)


@pytest.mark.parametrize("spec,expected", [
    ("validation", "Unknown split"),
    ("train[:2000]", "incompatible"),
    ("train[:200%]", "Error parsing"),
    ("train[5:5]", "selects no examples"),
    ("train[:", "train[:"),
])
def test_bad_split_specs(spec, expected):
  info = datasets.load_source("sklearn_digits").info
  with pytest.raises(ConfigError, match=re.escape(expected)) as e:
    datasets.split_size(spec, info, "train_split")
  assert "config.train_split" in str(e.value) and "train (1,437)" in str(e.value)


# --- Augmentation ------------------------------------------------------------

def _image(size, channels=3, seed=0):
  rng = np.random.RandomState(seed)
  return tf.constant(rng.uniform(-1, 1, (size, size, channels)), tf.float32)


def _crops(padded, size):
  """Every size x size window of `padded`, keyed by bytes."""
  span = padded.shape[0] - size + 1
  return {padded[r:r + size, c:c + size].tobytes()
          for r in range(span) for c in range(span)}


@pytest.mark.parametrize("size", [32, 16])
def test_crop_and_flip_vary_with_the_seed(size):
  image = _image(size)
  pad = scaled(4, size)
  assert pad == size // 8
  padded = np.pad(image.numpy(), [[pad, pad], [pad, pad], [0, 0]])
  plain, mirrored = _crops(padded, size), _crops(padded[:, ::-1], size)
  outputs = [augment(image, size, tf.constant([7, s]), random_flip=True)
             .numpy() for s in range(40)]
  kinds = ["plain" if o.tobytes() in plain else
           "flipped" if o.tobytes() in mirrored else "other" for o in outputs]
  assert "other" not in kinds
  assert 10 < kinds.count("flipped") < 30
  assert len({o.tobytes() for o in outputs}) > 25
  assert all(o.shape == (size, size, 3) for o in outputs)
  # The same seed gives the same image; no flip unless asked for.
  again = augment(image, size, tf.constant([7, 3]), random_flip=True)
  np.testing.assert_array_equal(outputs[3], again.numpy())
  # In a batch, every image draws its own crop and flip.
  batch = augment(tf.stack([image] * 40), size, tf.constant([7, 0]),
                  random_flip=True).numpy()
  kinds = ["plain" if o.tobytes() in plain else
           "flipped" if o.tobytes() in mirrored else "other" for o in batch]
  assert "other" not in kinds and 10 < kinds.count("flipped") < 30
  assert len({o.tobytes() for o in batch}) > 25
  unflipped = [augment(image, size, tf.constant([7, s]), random_flip=False)
               .numpy().tobytes() for s in range(20)]
  assert all(u in plain for u in unflipped)


@pytest.mark.parametrize("size,side", [(32, 16), (16, 8), (8, 4)])
def test_cutout_zeroes_exactly_one_square(size, side):
  assert scaled(16, size) == side
  corners = set()
  for s in range(30):
    out = cutout(tf.ones([size, size, 3]), side, tf.constant([1, s])).numpy()
    zero = np.argwhere(out[:, :, 0] == 0)
    assert len(zero) == side * side
    assert np.all(out[:, :, 1:] == out[:, :, :1])  # all channels alike
    (r0, c0), (r1, c1) = zero.min(axis=0), zero.max(axis=0)
    assert (r1 - r0 + 1, c1 - c0 + 1) == (side, side)
    corners.add((r0, c0))
  assert len(corners) > 10
  batch = cutout(tf.ones([20, size, size, 1]), side, tf.constant([1, 0]))
  zeros = [np.argwhere(b[:, :, 0] == 0) for b in batch.numpy()]
  assert all(len(z) == side * side for z in zeros)
  assert len({tuple(z.min(axis=0)) for z in zeros}) > 5


def test_preprocess_range_and_resize():
  raw = tf.constant(np.arange(0, 256, dtype=np.uint8).reshape(16, 16, 1))
  out = preprocess(raw, 16).numpy()
  assert out.min() == -1.0 and out.max() == 1.0
  small = preprocess(raw, 8).numpy()
  assert small.shape == (8, 8, 1) and small.min() >= -1 and small.max() <= 1


def _digits_fn(**kwargs):
  source = datasets.load_source("sklearn_digits")
  config = dict(split="train", image_size=16, batch_size=32, cutout_size=16)
  config.update(kwargs)
  return make_input_fn(source, PipelineConfig(**config))


def test_training_batches_range_and_variation():
  fn = _digits_fn(training=True, seed=5)
  batches = list(fn().take(3))
  images = np.concatenate([b[0]["image"].numpy() for b in batches])
  assert images.shape == (96, 16, 16, 1)
  assert images.min() >= -1.0 and images.max() <= 1.0
  # Cutout: every image holds an 8x8 block of exact zeros (0 is not a pixel
  # value of the normalised digits: (2 * v / 255 - 1) != 0 for integer v;
  # the zero padding adds zeros only along the borders).
  for image in images:
    zero = image[:, :, 0] == 0
    assert any(zero[r:r + 8, c:c + 8].all()
               for r in range(9) for c in range(9))
  # Same seed, same batches; another seed, another order.
  again = list(fn().take(3))
  np.testing.assert_array_equal(batches[0][0]["image"], again[0][0]["image"])
  other = next(iter(_digits_fn(training=True, seed=6)()))
  assert not np.array_equal(batches[0][1], other[1])


def test_replicas_split_the_single_device_global_batch():
  # Under MirroredStrategy tf.estimator hands the input_fn an InputContext
  # and the replicas take consecutive elements: together, the elements of
  # one step must be the single-device batch, augmentations included, also
  # when a resumed run skips batches.
  source = datasets.load_source("sklearn_digits")
  config = PipelineConfig(split="train", image_size=16, batch_size=32,
                          training=True, cutout_size=8)
  context = tf.distribute.InputContext(num_replicas_in_sync=2)
  for skip in (0, 3):
    fn = make_input_fn(source, config, seed_fn=lambda s=skip: (7, s))
    single = list(fn().take(2))
    shares = list(fn(input_context=context).take(4))
    assert [s[1].shape[0] for s in shares] == [16] * 4
    for step, (features, labels) in enumerate(single):
      pair = shares[2 * step:2 * step + 2]
      np.testing.assert_array_equal(
          features["image"], np.concatenate([p[0]["image"] for p in pair]))
      np.testing.assert_array_equal(
          labels, np.concatenate([p[1] for p in pair]))


def test_seed_fn_gives_each_call_a_new_order():
  seeds = iter(range(100, 200))
  source = datasets.load_source("sklearn_digits")
  fn = make_input_fn(source, PipelineConfig(
      split="train", image_size=8, batch_size=64, training=True),
                     seed_fn=lambda: next(seeds))
  first, second = next(iter(fn())), next(iter(fn()))
  assert not np.array_equal(first[1], second[1])


def test_training_epochs_are_reshuffled():
  source = datasets.load_source("sklearn_digits")
  fn = make_input_fn(source, PipelineConfig(
      split="train[:64]", image_size=8, batch_size=64, training=True,
      random_flip=False, seed=3))
  epochs = [b[1].numpy() for b in fn().take(3)]
  assert all(sorted(e) == sorted(epochs[0]) for e in epochs)
  assert not np.array_equal(epochs[0], epochs[1])


def test_evaluation_is_deterministic_and_complete():
  fn = _digits_fn(split="test", training=False, batch_size=50)
  first = [(b[0]["image"].numpy(), b[1].numpy()) for b in fn()]
  second = [(b[0]["image"].numpy(), b[1].numpy()) for b in fn()]
  assert sum(len(l) for _, l in first) == 360  # drop nothing
  for (a, la), (b, lb) in zip(first, second):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
  # No augmentation: exactly the normalised, resized images.
  raw = next(iter(datasets.load_source("sklearn_digits").read("test")))
  np.testing.assert_array_equal(first[0][0][0],
                                preprocess(raw["image"], 16).numpy())



def test_pipelines_run_without_tfdatas_tuning_thread():
  # Its thread made closing an Estimator's session wait for up to 10 s
  # (input.without_tuning_thread); turning it off changes no batch.
  tuned = tf.data.Options()
  tuned.autotune.enabled = True
  for training in (True, False):
    fn = _digits_fn(split="train" if training else "test",
                    training=training, seed=5)
    ds = fn()
    assert ds.options().autotune.enabled is False
    assert fn().with_options(tuned).options().autotune.enabled is True
    got = [b[0]["image"].numpy() for b in ds.take(3)]
    want = [b[0]["image"].numpy()
            for b in fn().with_options(tuned).take(3)]
    assert len(got) == 3
    for a, b in zip(got, want):
      np.testing.assert_array_equal(a, b)


# --- Into a search -----------------------------------------------------------

def _logits_classes(model_dir):
  reader = tf.train.load_checkpoint(model_dir)
  shapes = reader.get_variable_to_shape_map()
  kernels = [shape for name, shape in shapes.items()
             if name.endswith("logits/kernel") and "Momentum" not in name]
  assert kernels
  return {shape[-1] for shape in kernels}


# Slow: test_paper_configs runs CIFAR-10 and CIFAR-100 searches on mocked
# TFDS data in the fast suite.
@pytest.mark.slow
@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_short_search_on_tfds_cifar(tmp_path, name, classes):
  from test_search import tiny_config  # pylint: disable=g-import-not-at-top
  from improve_nas import search  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / "data")
  fake_prepared_tfds(data_dir, name, {"train": 80, "test": 20})
  c = tiny_config(dataset=name, data_dir=data_dir, image_size=16,
                  train_split="train[:75%]", eval_split="train[75%:]",
                  cutout_size=16)
  with mock_tfds(data_dir, num_examples=48):
    result = search.run_search(c, str(tmp_path / "run"))
  assert [r.iteration for r in result.records] == [0, 1]
  assert all(0 <= r.test_accuracy <= 1 for r in result.records)
  assert _logits_classes(str(tmp_path / "run")) == {classes}


def test_command_line_search_on_cifar_binary_files(tmp_path):
  from test_cli import _run  # pylint: disable=g-import-not-at-top
  write_cifar(str(tmp_path / "data"), "cifar10",
              {"train": [20, 20, 20, 20, 20], "test": [30]})
  model_dir = tmp_path / "run"
  proc = _run("trainer.main", "--config.dataset=cifar10",
              f"--config.data_dir={tmp_path / 'data'}",
              "--config.image_size=8", "--config.initial_arch=1@24",
              "--config.width_increment=24", "--config.max_iterations=1",
              "--config.steps_per_iteration=3", "--config.batch_size=8",
              "--config.use_aux_head=False", f"--model_dir={model_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "cifar10" in proc.stdout and "test accuracy" in proc.stdout
  assert _logits_classes(str(model_dir)) == {10}
  # Progress (always at an iteration's last step), no TF deprecation noise.
  assert "iteration 1/1  step 3/3" in proc.stdout
  assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stderr
  # The exported model takes the dataset's own 32x32x3 uint8 images and
  # resizes them to the search's 8x8 itself.
  path = proc.stdout.strip().splitlines()[-1].split("SavedModel: ")[1]
  serve = tf.saved_model.load(path).signatures["serving_default"]
  assert serve.structured_input_signature[1]["image"].shape.as_list() == [
      None, 32, 32, 3]
  out = serve(image=tf.zeros((2, 32, 32, 3), tf.uint8))
  assert out["probabilities"].shape == (2, 10)
  assert out["class_ids"].shape == (2,)
