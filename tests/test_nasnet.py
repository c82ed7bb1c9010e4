"""NASNet-A towers: size, drop path, auxiliary head, shapes, names, wiring."""

import numpy as np
import pytest
import tensorflow as tf

from improve_nas.errors import ConfigError
from improve_nas.nasnet import ops
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.cells import NORMAL_CELL, Cell
from improve_nas.nasnet.counting import (count_params, inference_params,
                                        tower_cost)
from improve_nas.nasnet.tower import NasnetTower

TINY = "1@24"  # 3 normal + 2 reduction cells, F = 1.


def _images(batch=4, size=8, channels=3, seed=0, width=None):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(
      -1, 1, (batch, size, width or size, channels)).astype(np.float32))


# --- Parameter counts (the paper's Table 2) ---------------------------------


@pytest.mark.parametrize("arch,paper,tolerance", [
    ("6@768", 3.3e6, 0.02),
    ("7@2304", 32.6e6, 0.01),
])
def test_param_count_matches_paper(arch, paper, tolerance):
  params = count_params(arch, num_classes=10, image_size=32, channels=3)
  assert abs(params - paper) / paper < tolerance, (arch, params)
  # The auxiliary head (trained, not kept) adds about 1.6-1.7M.
  cost = tower_cost(ArchSpec.parse(arch), 10, 32, 3)
  assert cost.params == params
  assert 1.55e6 < cost.params_with_aux - cost.params < 1.8e6


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 6, 10, 5), (2, 7, 9, 2)])
def test_factorized_reduction_reads_the_same_pixels_as_strided_slices(shape):
  """The even pixels, and those one down and right (zero-padded), with
  their gradients: equal to the last bit to NASNet's strided slices."""
  x = tf.constant(np.random.RandomState(0).randn(*shape).astype(np.float32))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    even, shifted = ops._even_pixels(x)  # pylint: disable=protected-access
    padded = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]
    want_even, want_shifted = x[:, ::2, ::2, :], padded[:, ::2, ::2, :]
    loss = tf.reduce_sum(even * 3.0) + tf.reduce_sum(shifted ** 2)
    want = (tf.reduce_sum(want_even * 3.0) +
            tf.reduce_sum(want_shifted ** 2))
  np.testing.assert_array_equal(even, want_even)
  np.testing.assert_array_equal(shifted, want_shifted)
  np.testing.assert_array_equal(tape.gradient(loss, x),
                                tape.gradient(want, x))


def test_param_count_grows_with_depth_and_width():
  base = count_params("1@48", 10, 8, 1)
  assert count_params("2@48", 10, 8, 1) > base
  assert count_params("1@72", 10, 8, 1) > base
  # The image size changes nothing but the auxiliary head (not counted).
  assert count_params("1@48", 10, 16, 1) == base
  # The inference-only build (for searches over sizes) counts the same.
  for arch in ("1@48", "2@72"):
    assert inference_params(arch, 10, 8, 1) == count_params(arch, 10, 8, 1)


# --- Drop path ---------------------------------------------------------------


def _expected_keep(arch, index, progress, keep=0.6):
  return 1 - (index + 1) / (arch.num_cells + 2) * min(progress, 1.0) * (1 - keep)


@pytest.mark.parametrize("arch_text", ["1@24", "2@48"])
def test_keep_prob_schedule(arch_text):
  arch = ArchSpec.parse(arch_text)
  tower = NasnetTower(arch, 10, drop_path_keep_prob=0.6)
  assert len(tower.cells) == arch.num_cells + 2
  for progress in (0.0, 0.5, 1.0, 2.0):
    got = [float(k) for k in tower.keep_probs(progress)]
    want = [_expected_keep(arch, i, progress) for i in range(len(got))]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for i, cell in enumerate(tower.cells):
      np.testing.assert_allclose(float(cell.keep_prob(progress)), want[i],
                                 rtol=1e-6)
  # Nothing is dropped at the start; the last cell reaches the configured keep
  # probability at the end; deeper cells drop more.
  assert all(float(k) == 1.0 for k in tower.keep_probs(0.0))
  end = [float(k) for k in tower.keep_probs(1.0)]
  assert end == sorted(end, reverse=True)
  np.testing.assert_allclose(end[-1], 0.6, rtol=1e-6)


def test_keep_prob_takes_a_tensor_progress():
  tower = NasnetTower(TINY, 10)
  step = tf.constant(5, tf.int64)
  progress = tf.minimum(tf.cast(step, tf.float32) / 10.0, 1.0)
  got = [float(k) for k in tower.keep_probs(progress)]
  want = [_expected_keep(tower.arch, i, 0.5) for i in range(len(got))]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_drop_path_is_random_in_training_only():
  tower = NasnetTower(TINY, 10, use_aux_head=False)
  images = _images(batch=8)
  # Training, end of schedule: each call draws new masks.
  a = tower(images, training=True, progress=1.0)["logits"].numpy()
  b = tower(images, training=True, progress=1.0)["logits"].numpy()
  assert not np.allclose(a, b)
  # Training, start of schedule: keep probability 1, nothing is dropped (batch
  # norm uses batch statistics, so the outputs are deterministic).
  a = tower(images, training=True, progress=0.0)["logits"].numpy()
  b = tower(images, training=True, progress=0.0)["logits"].numpy()
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Inference: never dropped, whatever the progress.
  a = tower(images, training=False, progress=1.0)["logits"].numpy()
  b = tower(images, training=False, progress=1.0)["logits"].numpy()
  np.testing.assert_array_equal(a, b)


def test_drop_path_layer_drops_whole_examples():
  layer = ops.DropPath()
  x = tf.ones([64, 2, 2, 3])
  out = layer(x, 0.5, training=True).numpy()
  per_example = out.reshape(64, -1)
  # Each example is either all zeros or all 1 / keep_prob.
  assert set(np.unique(per_example)) <= {0.0, 2.0}
  assert all(len(set(row)) == 1 for row in per_example)
  assert 0 < (per_example[:, 0] == 0).sum() < 64
  np.testing.assert_array_equal(layer(x, 0.5, training=False).numpy(), x)


# --- Auxiliary head ----------------------------------------------------------


def test_aux_head_in_training_only():
  tower = NasnetTower(TINY, 7, use_aux_head=True)
  images = _images()
  train = tower(images, training=True, progress=0.5)
  assert set(train) == {"logits", "last_layer", "aux_logits"}
  assert train["aux_logits"].shape == (4, 7)
  assert train["logits"].shape == (4, 7)
  infer = tower(images, training=False)
  assert "aux_logits" not in infer
  assert set(infer) == {"logits", "last_layer"}
  aux = [w.name for w in tower.trainable_weights if "/aux_" in w.name]
  assert any("aux_conv_0" in n for n in aux)
  assert any("aux_conv_1" in n for n in aux)
  assert any("aux_logits" in n for n in aux)
  # The auxiliary logits depend on the input.
  other = tower(_images(seed=1), training=True)["aux_logits"]
  assert not np.allclose(other.numpy(), train["aux_logits"].numpy())


def test_aux_head_channels_are_configurable():
  tower = NasnetTower(TINY, 7, use_aux_head=True, aux_head_filters=(8, 16))
  out = tower(_images(), training=True)
  assert out["aux_logits"].shape == (4, 7)
  kernels = {w.name.split("/")[-2]: w.shape.as_list()
             for w in tower.trainable_weights if "/aux_conv" in w.name}
  assert kernels["aux_conv_0"][-1] == 8 and kernels["aux_conv_1"][-2:] == [8, 16]
  for bad in ((8,), (8, 0), (8.0, 16), "8,16"):
    with pytest.raises(ConfigError, match="aux_head_filters"):
      NasnetTower(TINY, 7, aux_head_filters=bad)


def test_no_aux_head_when_disabled():
  tower = NasnetTower(TINY, 10, use_aux_head=False)
  out = tower(_images(), training=True)
  assert "aux_logits" not in out
  assert not [w for w in tower.weights if "/aux_" in w.name]


# --- Input shapes ------------------------------------------------------------


@pytest.mark.parametrize("size,width,channels", [
    (8, None, 1), (12, None, 1), (8, None, 3), (16, None, 2), (8, 12, 1),
    (12, 8, 3), (32, 16, 1), (20, 8, 1)])
def test_any_channels_and_sizes_divisible_by_4(size, width, channels):
  tower = NasnetTower(TINY, 5)
  images = _images(batch=2, size=size, width=width, channels=channels)
  out = tower(images, training=True)
  assert out["logits"].shape == (2, 5)
  assert out["aux_logits"].shape == (2, 5)
  assert out["last_layer"].shape == (2, 24)  # P penultimate features
  assert tower(images, training=False)["logits"].shape == (2, 5)


@pytest.mark.parametrize("size,width,bad", [
    (10, None, 10), (8, 10, 10), (6, None, 6)])
def test_size_not_divisible_by_4_rejected(size, width, bad):
  tower = NasnetTower(TINY, 10)
  with pytest.raises(ConfigError) as info:
    tower(_images(batch=1, size=size, width=width), training=False)
  assert f"image_size {bad}" in str(info.value)
  assert "multiple of 4" in str(info.value)
  assert "1@24" in str(info.value)


def test_penultimate_features_match_arch():
  tower = NasnetTower("1@48", 3, use_aux_head=False)
  out = tower(_images(batch=1), training=False)
  assert out["last_layer"].shape == (1, 48)


# --- Deterministic names -----------------------------------------------------


def _variable_names_in_new_graph(arch, disturb):
  with tf.Graph().as_default():
    if disturb:  # Advance Keras's automatic name counters.
      for _ in range(3):
        tf.keras.layers.Dense(2)(tf.zeros([1, 2]))
        tf.keras.layers.BatchNormalization()(tf.zeros([1, 2]))
    tower = NasnetTower(arch, 10, name="nasnet")
    images = tf.compat.v1.placeholder(tf.float32, [2, 8, 8, 1])
    step = tf.compat.v1.train.get_or_create_global_step()
    tower(images, training=True, progress=tf.cast(step, tf.float32) / 10.0)
    tower_names = [v.name for v in tower.weights]
    graph_names = sorted(v.name for v in tf.compat.v1.global_variables()
                         if v.name.startswith("nasnet/"))
  return tower_names, graph_names


def test_variable_names_are_deterministic():
  first, first_graph = _variable_names_in_new_graph(TINY, disturb=False)
  second, second_graph = _variable_names_in_new_graph(TINY, disturb=True)
  assert first == second
  assert first_graph == second_graph
  assert sorted(first) == first_graph
  assert len(set(first)) == len(first)
  assert all(name.startswith("nasnet/") for name in first)
  # Every layer has an explicit name: no Keras default (auto-numbered) one.
  defaults = ("conv2d", "separable_conv2d", "batch_normalization", "dense",
              "drop_path", "average_pooling2d", "max_pooling2d", "cell/",
              "relu_conv_bn", "sep_conv_stack", "factorized_reduction")
  for name in first:
    assert not any(f"/{d}" in name for d in defaults), name
  assert any("moving_mean" in n for n in first)
  assert any("reduction_cell_1/" in n for n in first)


# --- Cell wiring (NASNet-A, Zoph et al. 2018, Fig. 4) -----------------------


def test_normal_cell_wiring_matches_design():
  """Normal cell: h0 = previous cell output, h1 = the one before.

  The output is concat(h1, s2..s6) and block 3 is avg3(h0) + id(h1), so with
  an h1 that needs no projection the first F channels are h1 itself and the
  fourth F channels are h1 + avg3(projected h0).
  """
  filters = 4
  cell = Cell(NORMAL_CELL, filters, 1, cell_index=0, total_cells=5,
              drop_path_keep_prob=0.6, name="cell_0")
  older = _images(batch=2, size=8, channels=filters, seed=1)  # h1
  prev = _images(batch=2, size=8, channels=filters, seed=2)   # h0
  out = cell([older, prev], training=False).numpy()
  assert out.shape == (2, 8, 8, 6 * filters)
  assert cell.older_proj is None  # Same size and filters: h1 is used as is.
  np.testing.assert_allclose(out[..., :filters], older.numpy(), atol=1e-6)
  h0 = cell.prev_proj(prev, training=False)
  avg = tf.keras.layers.AveragePooling2D(3, 1, padding="same")(h0).numpy()
  np.testing.assert_allclose(out[..., 3 * filters:4 * filters],
                             avg + older.numpy(), rtol=1e-5, atol=1e-5)


def test_normal_cell_state_dependencies_match_design():
  """Block 4 is avg3(h1) + avg3(h1): its output ignores h0 (the previous
  cell's output), and so does the pass-through of h1."""
  filters = 3
  cell = Cell(NORMAL_CELL, filters, 1, cell_index=1, total_cells=5,
              drop_path_keep_prob=0.6, name="cell_1")
  older = _images(batch=2, size=8, channels=filters, seed=3)
  prev = _images(batch=2, size=8, channels=filters, seed=4)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([older, prev])
    out = cell([older, prev], training=False)
    h1_only = tf.reduce_sum(out[..., :filters]) + tf.reduce_sum(
        out[..., 4 * filters:5 * filters])
    both = tf.reduce_sum(out[..., filters:2 * filters])
  grads = tape.gradient(h1_only, [older, prev])
  assert grads[0] is not None and np.any(grads[0].numpy())
  assert grads[1] is None or not np.any(grads[1].numpy())
  grads = tape.gradient(both, [older, prev])
  assert all(g is not None and np.any(g.numpy()) for g in grads)
