"""The Keras engine's towers are the adanet engine's: the same NASNet-A code
under Keras 3, the same parameter counts."""

import json

import numpy as np
import pytest

from improve_nas.configs import demo
from improve_nas import config as config_lib
from improve_nas.dataset_facts import DatasetFacts
from improve_nas.keras_engine.training import make_tower, variable_name
from improve_nas.nasnet import counting
from improve_nas.nasnet.arch import ArchSpec


def _params(tower, aux):
  return sum(int(np.prod(v.shape)) for v in tower.trainable_weights
             if ("/aux_" in variable_name(v)) == aux)


@pytest.mark.parametrize("arch,params", [
    ("6@768", 3_328_234),
    pytest.param("7@2304", 32_443_882, marks=pytest.mark.slow)])
def test_paper_towers_have_the_papers_parameter_counts(arch, params):
  assert counting.tower_cost(arch, 10, 32, 3).params == params


def test_a_candidates_tower_is_what_the_budget_counts():
  c = demo.get_config()
  c.initial_arch = "1@24"
  c = config_lib.prepared(c)
  facts = DatasetFacts.load(c)
  arch = ArchSpec.parse("2@48")
  tower = make_tower(c, facts, arch, 0)
  cost = facts.cost(arch)
  assert _params(tower, aux=False) == cost.params == facts.params(arch)
  assert _params(tower, aux=False) + _params(tower, aux=True) == \
      cost.params_with_aux
  # Made in inference mode first: building the auxiliary head left the
  # batch-norm statistics at their initial values.
  for v in tower.non_trainable_weights:
    if "aux_" in variable_name(v):
      continue
    want = 0.0 if "moving_mean" in variable_name(v) else 1.0
    np.testing.assert_array_equal(v.numpy(), want)
  # The same seed and position give the same initial weights.
  again = make_tower(c, facts, arch, 0)
  other = make_tower(c, facts, arch, 1)
  first = tower.trainable_weights[0].numpy()
  np.testing.assert_array_equal(first, again.trainable_weights[0].numpy())
  assert not np.array_equal(first, other.trainable_weights[0].numpy())


def test_counts_are_kept_for_the_next_process(tmp_path, monkeypatch):
  monkeypatch.setenv("IMPROVE_NAS_CACHE", str(tmp_path))
  counting._disk_cached.cache_clear()
  cost = counting.tower_cost("1@24", 10, 8, 1, (8, 16))
  with open(tmp_path / "tower_costs.json") as f:
    (key, saved), = json.load(f).items()
  assert key.endswith("/1@24/10/8/1/8x16")
  assert saved == [cost.params, cost.params_with_aux, cost.mult_adds,
                   cost.mult_adds_with_aux]
  monkeypatch.setenv("IMPROVE_NAS_CACHE", "0")
  counting._disk_cached.cache_clear()
  assert counting.tower_cost("1@24", 10, 8, 1, (8, 16)) == cost
  assert len(list(tmp_path.iterdir())) == 1


def test_fused_batch_norm_normalizes_as_keras_and_keeps_its_statistics():
  import keras  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet import ops  # pylint: disable=g-import-not-at-top
  images = np.random.default_rng(0).normal(
      3.0, 2.0, size=(8, 4, 4, 5)).astype(np.float32)
  fused = ops.batch_norm("bn")
  assert isinstance(fused, ops.FusedBatchNorm)
  reference = keras.layers.BatchNormalization(
      momentum=ops.BN_MOMENTUM, epsilon=ops.BN_EPSILON)
  trained = fused(images, training=True).numpy()
  np.testing.assert_allclose(
      trained, reference(images, training=True).numpy(), atol=1e-5)
  assert sorted(w.path.split("/")[-1] for w in fused.weights) == \
      ["beta", "gamma", "moving_mean", "moving_variance"]
  assert [w.name for w in fused.trainable_weights] == ["gamma", "beta"]
  # One step of the moving averages; the variance with Bessel's correction,
  # as Keras 2's fused batch norm (the adanet engine's) keeps it.
  n = images.size // images.shape[-1]
  mean = images.mean(axis=(0, 1, 2))
  variance = images.var(axis=(0, 1, 2)) * n / (n - 1)
  m = ops.BN_MOMENTUM
  np.testing.assert_allclose(fused.moving_mean.numpy(), (1 - m) * mean,
                             rtol=1e-5)
  np.testing.assert_allclose(fused.moving_variance.numpy(),
                             m + (1 - m) * variance, rtol=1e-5)
  # Inference normalizes with the moving statistics.
  expected = (images - fused.moving_mean.numpy()) / np.sqrt(
      fused.moving_variance.numpy() + ops.BN_EPSILON)
  np.testing.assert_allclose(fused(images, training=False).numpy(), expected,
                             atol=1e-5)
