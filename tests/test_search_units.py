"""Graph-level tests of distillation, mixture weights and generators, built
with adanet's real Subnetwork / ensembler classes."""

import os

import numpy as np
import pytest
import tensorflow as tf

from improve_nas import distillation
from improve_nas.builder import CandidateGenerator
from improve_nas.compat import adanet
from improve_nas.ensemble import MixtureWeightEnsembler
from improve_nas.errors import SearchEnded
from improve_nas.proposals import (ConstantProposer, DynamicProposer,
                                  candidate_arch, candidate_name)
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.counting import count_params


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def _soft_ce(teacher, student, temperature):
  p = _softmax(teacher / temperature)
  log_q = np.log(_softmax(student / temperature))
  return temperature**2 * np.mean(-(p * log_q).sum(axis=-1))


def _subnetwork(name, x, classes=4, shared=None):
  with tf.compat.v1.variable_scope(name):
    w = tf.compat.v1.get_variable(
        "w", [x.shape[-1], classes],
        initializer=tf.compat.v1.random_normal_initializer(
            seed=sum(map(ord, name))))
  logits = tf.matmul(x, w)
  return adanet.subnetwork.Subnetwork(
      last_layer=x, logits=logits, complexity=tf.constant(1.0),
      shared=shared), w


def _summary():
  # adanet's own graph-mode summary sink, as the Estimator passes it.
  from adanet.core.summary import _ScopedSummary  # pylint: disable=g-import-not-at-top
  return _ScopedSummary(scope="test", namespace="test")


def _build(learn, n_members=3, seed=0, shared=None):
  rng = np.random.RandomState(seed)
  x = tf.constant(rng.randn(6, 5).astype(np.float32))
  labels = tf.constant(rng.randint(0, 4, (6, 1)))
  members, weights = zip(*[_subnetwork(f"m{i}", x, shared=shared)
                            for i in range(n_members)])
  ensembler = MixtureWeightEnsembler(learn=learn, learning_rate=0.5,
                                     steps_per_iteration=10)
  ensemble = ensembler.build_ensemble(
      subnetworks=list(members), previous_ensemble_subnetworks=None,
      features=None, labels=labels, logits_dimension=4, training=True,
      iteration_step=tf.constant(0, tf.int64), summary=_summary(),
      previous_ensemble=None)
  return ensembler, ensemble, members, weights, labels


@pytest.mark.parametrize("mode", ["none", "adaptive", "born_again"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kd_term_is_soft_cross_entropy_against_the_right_teacher(
    mode, temperature):
  with tf.Graph().as_default():
    _, ensemble, members, weights, _ = _build(learn=False)
    rng = np.random.RandomState(1)
    x = tf.constant(rng.randn(6, 5).astype(np.float32))
    student_w = tf.Variable(rng.randn(5, 4).astype(np.float32))
    student = tf.matmul(x, student_w)
    teacher = distillation.teacher_logits(mode, ensemble)
    kd = distillation.kd_loss(student, teacher, temperature)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      kd_value, student_v, ens_v, last_v = sess.run(
          [kd, student, ensemble.logits, members[-1].logits])
    if mode == "none":
      assert teacher is None and kd_value == 0.0
      return
    expected_teacher = ens_v if mode == "adaptive" else last_v
    other = last_v if mode == "adaptive" else ens_v
    np.testing.assert_allclose(
        kd_value, _soft_ce(expected_teacher, student_v, temperature),
        rtol=1e-5)
    assert abs(kd_value - _soft_ce(other, student_v, temperature)) > 1e-4
    # The teacher is frozen: no gradient reaches any member, one reaches
    # the student.
    grads = tf.gradients(kd, list(weights) + [student_w])
    assert all(g is None for g in grads[:-1])
    assert grads[-1] is not None


def test_no_teacher_for_the_first_member():
  assert distillation.teacher_logits("adaptive", None) is None
  assert distillation.teacher_logits("born_again", None) is None


@pytest.mark.parametrize("learn", [False, True])
def test_mixture_weights(learn):
  with tf.Graph().as_default():
    ensembler, ensemble, members, member_weights, labels = _build(learn)
    mixture = [ws.weight for ws in ensemble.weighted_subnetworks]
    weighted_sum = tf.add_n([ws.weight * m.logits for ws, m in
                             zip(ensemble.weighted_subnetworks, members)])
    loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(
        tf.reshape(labels, [-1]), ensemble.logits)
    mixture_vars = [v for v in tf.compat.v1.trainable_variables()
                    if "mixture_weight" in v.name]
    train_op = ensembler.build_train_op(
        ensemble, loss, mixture_vars, labels, tf.constant(0, tf.int64),
        _summary(), None)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      before = sess.run(mixture + list(member_weights))
      np.testing.assert_allclose(before[:3], [1 / 3] * 3, rtol=1e-6)
      ens, expected = sess.run([ensemble.logits, weighted_sum])
      np.testing.assert_allclose(ens, expected, rtol=1e-5, atol=1e-6)
      for _ in range(3):
        sess.run(train_op)
      after = sess.run(mixture + list(member_weights))
    # Members never move: the ensembler trains only mixture weights.
    for b, a in zip(before[3:], after[3:]):
      np.testing.assert_array_equal(b, a)
    if learn:
      assert not np.allclose(after[:3], before[:3])
    else:
      np.testing.assert_array_equal(after[:3], [np.float32(1 / 3)] * 3)


def _count(arch):
  return count_params(arch, num_classes=10, image_size=8, channels=1)


def test_dynamic_generator_proposes_deeper_and_wider_neighbours():
  gen = DynamicProposer("1@48", width_increment=48, count_fn=_count)
  proposed, fitting = gen.candidates([])
  assert [(str(c.arch), c.reason) for c in proposed] == [
      ("2@48", "deeper"), ("1@96", "wider")]
  assert fitting == proposed
  last = ArchSpec.parse("2@96")
  proposed, _ = gen.candidates([(ArchSpec.parse("1@96"), 1),
                                (last, _count(last))])
  assert [str(c.arch) for c in proposed] == ["3@96", "2@144"]
  assert all(c.params == _count(c.arch) for c in proposed)
  again = DynamicProposer("1@48", reconsider_previous=True,
                          width_increment=48, count_fn=_count)
  assert [(str(c.arch), c.reason) for c in again.candidates(
      [(last, 1)])[0]] == [("3@96", "deeper"), ("2@144", "wider"),
                           ("2@96", "same")]


def test_budget_filters_candidates_and_ends_the_search():
  small = _count("1@24")
  budget = small + _count("1@48")
  gen = DynamicProposer("1@24", width_increment=24, param_budget=budget,
                        count_fn=_count)
  proposed, fitting = gen.candidates([(ArchSpec.parse("1@24"), small)])
  assert [str(c.arch) for c in proposed] == ["2@24", "1@48"]
  assert [str(c.arch) for c in fitting] == [
      str(c.arch) for c in proposed if small + c.params <= budget]
  assert "1@48" in [str(c.arch) for c in fitting]

  const = CandidateGenerator(
      ConstantProposer("1@24", param_budget=small + small // 2,
                       count_fn=_count), builder_fn=lambda arch: arch)
  assert const.generate_candidates(None, 0, None, None, None) == [
      ArchSpec.parse("1@24")]
  with tf.Graph().as_default():
    # A real one-member adanet ensemble whose member is a 1@24 tower.
    _, previous, _, _, _ = _build(
        learn=False, n_members=1, shared={"arch": "1@24", "params": small})
    with pytest.raises(SearchEnded, match=r"budget of [\d,]+.*1@24"):
      const.generate_candidates(previous, 1, None, None, None)
  # The check growth makes before writing the next iteration's checkpoint,
  # from the members' names in adanet's architecture file.
  with pytest.raises(SearchEnded, match=r"budget of [\d,]+.*1@24"):
    const.check_next_fits(["nasnet_1x24"], 1)
  const.check_next_fits([], 0)  # the first member fits


def test_candidate_names_give_back_their_architecture():
  for text in ("1@24", "6@768", "7@2304"):
    arch = ArchSpec.parse(text)
    assert candidate_arch(candidate_name(arch)) == arch


def _directory_state(path):
  """What creating or removing anything in `path` changes."""
  return sorted(os.listdir(path)), os.stat(path).st_mtime_ns


@pytest.mark.parametrize("existing", [False, True])
def test_building_a_search_creates_and_removes_nothing(tmp_path, existing):
  # The processes of a cluster build their searches on one model_dir at the
  # same moment: a directory one of them made and removed again was gone
  # under another that had just found it.
  from improve_nas import search  # pylint: disable=g-import-not-at-top
  from test_search import tiny_config  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "run"
  if existing:
    model_dir.mkdir()
  before = _directory_state(tmp_path)
  inside = _directory_state(model_dir) if existing else None
  built = search.build_search(tiny_config(), str(model_dir))
  assert built.estimator.model_dir == str(model_dir)
  assert _directory_state(tmp_path) == before
  if existing:
    assert _directory_state(model_dir) == inside
  else:
    assert not model_dir.exists()
  # adanet's report store still works for an Estimator with a report
  # materializer: it makes its directory when it writes its first report.
  from adanet.core import estimator as adanet_estimator  # pylint: disable=g-import-not-at-top
  from adanet.core.report_accessor import _ReportAccessor  # pylint: disable=g-import-not-at-top
  store_class = adanet_estimator._ReportAccessor  # pylint: disable=protected-access
  assert issubclass(store_class, _ReportAccessor)
  store = store_class(str(tmp_path / "elsewhere" / "report"))
  assert not (tmp_path / "elsewhere").exists()
  assert store.read_iteration_reports() == []
  store.write_iteration_report(0, [])
  assert len(store.read_iteration_reports()) == 1
