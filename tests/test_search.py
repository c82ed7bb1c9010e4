"""End-to-end searches: the real adanet.Estimator on the embedded digits,
tiny towers and images, a few steps per iteration."""

import gc
import glob
import json
import os
import weakref

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from improve_nas import adanas_estimator
from improve_nas.compat import adanet
from improve_nas import records as records_lib
from improve_nas import search
from improve_nas.configs.demo import get_config
from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.counting import count_params

STEPS = 3


def tiny_config(**overrides):
  c = get_config()
  c.image_size = 8
  c.initial_arch = "1@24"
  c.width_increment = 24
  c.max_iterations = 2
  c.steps_per_iteration = STEPS
  c.batch_size = 16
  c.eval_steps = 2
  c.selection_steps = 2
  c.save_summary_steps = 1
  c.use_aux_head = False
  for k, v in overrides.items():
    c[k] = v
  return c


def _scalars(directory, tag):
  """Values of one scalar summary in `directory`, in step order."""
  events = []
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    if tag in acc.Tags()["tensors"]:
      events += [(e.step, e.wall_time, float(tf.make_ndarray(e.tensor_proto)))
                 for e in acc.Tensors(tag)]
  return [value for _, _, value in sorted(events)]


def _graphs():
  return [g for g in gc.get_objects()
          if type(g) is tf.Graph and g.get_operations()]  # pylint: disable=unidiomatic-typecheck


def _mixture_weights(reader, iteration, ensemble):
  prefix = f"adanet/iteration_{iteration}/ensemble_{ensemble}/"
  names = sorted(n for n in reader.get_variable_to_shape_map()
                 if n.startswith(prefix) and n.endswith("logits/mixture_weight"))
  return [float(reader.get_tensor(n)) for n in names]


# The fast suite runs one case; dynamic generators with adaptive KD and
# learned weights also run in test_resume, test_faults and test_monitoring.
FAST = [("born_again", "constant", False)]
GRID = [(kd, gen, learn) for kd in ("none", "adaptive", "born_again")
        for gen in ("constant", "dynamic") for learn in (True, False)]
CASES = [pytest.param(*case, marks=() if case in FAST else pytest.mark.slow,
                      id=f"{case[0]}-{case[1]}-{'learned' if case[2] else 'uniform'}")
         for case in GRID]


@pytest.mark.parametrize("kd,generator,learn", CASES)
def test_search_grid(tmp_path, monkeypatch, kd, generator, learn):
  c = tiny_config(knowledge_distillation=kd, generator=generator,
                  learn_mixture_weights=learn)
  model_dir = str(tmp_path / "run")
  before = weakref.WeakSet(_graphs())
  # adanet's candidate evaluation phase, counted per checkpoint, and the
  # selections made (the iteration of each).
  phases, selections = [], []
  phase = adanet.Estimator._execute_candidate_evaluation_phase  # pylint: disable=protected-access
  record = adanas_estimator.RecordingEvaluator.record

  def counted(self, input_fn, export_best_architecture, checkpoint_path,
              hooks):
    phases.append(os.path.basename(checkpoint_path))
    return phase(self, input_fn, export_best_architecture, checkpoint_path,
                 hooks)

  def recorded(self, values, iteration):
    selections.append(iteration)
    return record(self, values, iteration)

  monkeypatch.setattr(adanet.Estimator, "_execute_candidate_evaluation_phase",
                      counted)
  monkeypatch.setattr(adanas_estimator.RecordingEvaluator, "record", recorded)
  result = search.run_search(c, model_dir)
  records = result.records
  # Once per finished iteration, inside the test evaluation's graph and
  # session, and never in a graph of its own: the next iteration's
  # bookkeeping and the export reuse it (adanet alone selected twice, in
  # graphs of their own). A lone candidate (iteration 1 of the constant
  # generator) is chosen without a selection, as adanet does.
  assert phases == []
  assert selections == ([1] if generator == "constant" else [0, 1])
  assert [r.iteration for r in records] == [0, 1] and result.ended is None
  # No graph of the search outlives it (adanet's summaries used to keep one
  # per iteration alive, 100-300 MB each at the demo's sizes).
  del result
  gc.collect()
  assert [len(g.get_operations()) for g in _graphs() if g not in before] == []
  assert records == records_lib.load_records(model_dir)

  # Candidates: the constant architecture, or deeper/wider neighbours of the
  # last chosen member.
  for r in records:
    archs = [x.arch for x in r.candidates]
    if generator == "constant":
      assert archs == ["1@24"]
    else:
      base = ArchSpec.parse(records[r.iteration - 1].ensemble_archs[-1]
                            if r.iteration else "1@24")
      assert archs == [str(base.deeper()), str(base.wider(24))]
    assert r.chosen in [x.name for x in r.candidates]
    assert all(x.params == count_params(x.arch, 10, 8, 1)
               for x in r.candidates)
    if len(r.candidates) > 1 or r.iteration:
      assert all(np.isfinite(x.selection_loss) for x in r.candidates)
    else:  # adanet does not evaluate a lone first candidate
      assert r.candidates[0].selection_loss is None
    assert 0.0 <= r.test_accuracy <= 1.0
  chosen = [next(x for x in r.candidates if x.name == r.chosen)
            for r in records]
  # adanet's evaluator picks the lowest selection loss.
  for r, ch in zip(records, chosen):
    if len(r.candidates) > 1:
      assert ch.selection_loss == min(x.selection_loss for x in r.candidates)
  assert records[1].ensemble_archs == [ch.arch for ch in chosen]
  assert records[1].ensemble_params == sum(ch.params for ch in chosen)

  # Mixture weights of the final two-member ensemble: 1/2 each when uniform.
  final = tf.train.load_checkpoint(model_dir)
  name = f"t1_{chosen[1].name}_grow_{'learned' if learn else 'uniform'}"
  weights = _mixture_weights(final, 1, name)
  assert len(weights) == 2
  if learn:
    assert not np.allclose(weights, 0.5)
  else:
    assert weights == [0.5, 0.5]

  # The first member (the teacher of iteration 1) is frozen in iteration 1:
  # its variables, batch-norm statistics included, do not change.
  first = tf.train.load_checkpoint(os.path.join(model_dir,
                                                f"model.ckpt-{STEPS}"))
  member = f"adanet/iteration_0/subnetwork_t0_{chosen[0].name}/nasnet/"
  names = [n for n in final.get_variable_to_shape_map()
           if n.startswith(member) and "momentum" not in n]
  assert len(names) > 20
  for n in names:
    np.testing.assert_array_equal(first.get_tensor(n), final.get_tensor(n))

  # The KD term as summarised during training: zero without a teacher.
  for r in records:
    for x in r.candidates:
      kd_values = _scalars(os.path.join(
          model_dir, "subnetwork", f"t{r.iteration}_{x.name}"), "loss/kd")
      assert kd_values, f"no loss/kd summary for t{r.iteration}_{x.name}"
      # Drop path follows the iteration's own step: no drop at its first
      # step, then the keep probability falls (the TF 1 AdaNAS code never
      # advanced it).
      keep = _scalars(os.path.join(
          model_dir, "subnetwork", f"t{r.iteration}_{x.name}"),
                      "drop_path_keep_prob/last_cell")
      assert len(keep) >= STEPS and keep[0] == 1.0 and keep[-1] < 1.0
      assert all(b <= a for a, b in zip(keep, keep[1:]))
      if kd == "none" or r.iteration == 0:
        assert all(v == 0.0 for v in kd_values)
      else:
        assert all(v > 0.0 for v in kd_values)


def test_budget_ends_the_search_cleanly(tmp_path):
  small = count_params("1@24", 10, 8, 1)
  c = tiny_config(generator="constant", param_budget=small + small // 2,
                  max_iterations=3, use_aux_head=True)
  model_dir = str(tmp_path / "run")
  result = search.run_search(c, model_dir)
  assert len(result.records) == 1
  assert "no candidate fits the parameter budget" in result.ended
  with open(os.path.join(model_dir, search.RECORDS_FILE)) as f:
    saved = json.load(f)
  assert saved["ended"] == result.ended and len(saved["iterations"]) == 1
  # The auxiliary-head loss is part of the training loss (the TF 1 code
  # silently dropped it).
  member_dir = os.path.join(model_dir, "subnetwork", "t0_nasnet_1x24")
  aux = _scalars(member_dir, "loss/aux")
  total = _scalars(member_dir, "loss/total")
  label = _scalars(member_dir, "loss/label")
  assert aux and all(v > 0 for v in aux)
  assert all(t > l + a for t, l, a in zip(total, label, aux))
  # The ensemble found so far stays usable.
  metrics = result.estimator.evaluate(
      lambda: tf.data.Dataset.from_tensor_slices(
          ({"image": np.zeros((4, 8, 8, 1), np.float32)},
           np.zeros((4,), np.int64))).batch(4), steps=1)
  assert metrics["iteration"] == 0


@pytest.mark.slow  # two iterations of the dynamic generator: 2 minutes
def test_finished_iteration_is_evaluated_and_rebuilt_once(tmp_path,
                                                          monkeypatch):
  """Between iterations the search does each piece of adanet's work once:
  the candidates of the finished iteration are evaluated for selection
  once (the test evaluation needs the best one, and the next iteration's
  bookkeeping reuses it), and no training session is opened on the
  finished iteration's graph again before it grows."""
  evaluations = []
  record = adanas_estimator.RecordingEvaluator.record

  def counted(self, values, iteration):
    evaluations.append(iteration)
    return record(self, values, iteration)

  monkeypatch.setattr(adanas_estimator.RecordingEvaluator, "record",
                      counted)
  sessions = []

  class CountSteps(tf.estimator.SessionRunHook):

    def begin(self):
      sessions.append(0)

    def after_run(self, run_context, run_values):
      sessions[-1] += 1

  model_dir = str(tmp_path / "run")
  result = search.run_search(tiny_config(generator="dynamic"), model_dir,
                             hooks=[CountSteps()])
  assert [r.iteration for r in result.records] == [0, 1]
  # Two candidate ensembles in each iteration: one selection each.
  assert evaluations == [0, 1]
  assert [n for n in sessions if n] == [STEPS, STEPS]
  # The chosen architecture of iteration 1 was still written for adanet.
  assert os.path.exists(os.path.join(model_dir, "architecture-0.json"))
  assert all(np.isfinite(x.selection_loss) for r in result.records
             for x in r.candidates)
