"""Faults: a candidate whose loss becomes NaN or infinite (an absurd learning
rate) is never selected and does not stop the others; when every candidate of
an iteration diverges the search stops with one clear line and keeps the
ensemble found so far. A full disk while checkpointing is one line, exit 2,
and leaves the last checkpoint intact."""

import dataclasses
import json
import math
import os
import resource
import signal
import sys

import numpy as np
import pytest
import tensorflow as tf

from improve_nas import estimator as estimator_lib
from improve_nas import records as records_lib
from improve_nas import search
from improve_nas.builder import NasnetBuilder

import forkserver
from test_search import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSURD = 1e30  # one step makes the weight decay term overflow


def _absurd_builder(diverges):
  """A NasnetBuilder whose learning rate is ABSURD when
  `diverges(arch, previous_ensemble)` holds."""

  class AbsurdBuilder(NasnetBuilder):

    def build_subnetwork_train_op(self, subnetwork, loss, var_list, labels,
                                  iteration_step, summary, previous_ensemble):
      if diverges(str(self.arch), previous_ensemble):
        self._training = dataclasses.replace(self._training,
                                             learning_rate=ABSURD)
      return super().build_subnetwork_train_op(
          subnetwork, loss, var_list, labels, iteration_step, summary,
          previous_ensemble)

  return AbsurdBuilder


@pytest.mark.slow  # a dynamic-generator iteration; a minute
def test_a_diverged_candidate_is_not_selected(tmp_path):
  # Dynamic generator from 1@24: 2@24 (deeper) and 1@48 (wider) compete in
  # the first iteration; the wider one gets an absurd learning rate.
  builder = _absurd_builder(
      lambda arch, previous: arch == "1@48" and previous is None)
  c = tiny_config(generator="dynamic", knowledge_distillation="none",
                  learn_mixture_weights=False, max_iterations=1)
  result = search.run_search(
      search.build_search(c, str(tmp_path), builder_fn=builder))
  assert result.ended is None and not result.diverged
  [first] = result.records
  by_name = {x.name: x for x in first.candidates}
  assert by_name["nasnet_1x48"].diverged
  assert by_name["nasnet_1x48"].selection_loss is None
  assert not by_name["nasnet_2x24"].diverged
  assert math.isfinite(by_name["nasnet_2x24"].selection_loss)
  assert first.chosen == "nasnet_2x24"
  # The other candidate, trained in the same steps, was not poisoned: the
  # ensemble's metrics and weights are finite.
  assert first.ensemble_archs == ["2@24"]
  assert math.isfinite(first.test_accuracy) and math.isfinite(first.test_loss)
  assert first.mixture_weights and all(math.isfinite(w)
                                       for w in first.mixture_weights)
  # search.json stays strict JSON (no NaN literals) and says it diverged.
  with open(tmp_path / search.RECORDS_FILE) as f:
    saved = json.load(f, parse_constant=lambda name: pytest_fail(name))
  wider = [x for x in saved["iterations"][0]["candidates"]
           if x["name"] == "nasnet_1x48"][0]
  assert wider["diverged"] is True and wider["selection_loss"] is None


def pytest_fail(name):
  raise AssertionError(f"search.json holds the non-JSON constant {name}")


@pytest.mark.slow  # the fast suite: diverging at once, and one candidate
def test_every_candidate_diverging_later_keeps_the_ensemble_so_far(
    tmp_path):
  # Iteration 1 trains normally; every candidate of iteration 2 diverges.
  builder = _absurd_builder(lambda arch, previous: previous is not None)
  c = tiny_config(generator="constant", max_iterations=2)
  result = search.run_search(
      search.build_search(c, str(tmp_path), builder_fn=builder), export=True)
  assert result.diverged
  assert result.ended.startswith("iteration 2: every candidate diverged")
  assert "the ensemble of iteration 1 (1@24) is kept" in result.ended
  assert "--config.learning_rate" in result.ended
  assert [r.iteration for r in result.records] == [0]
  saved = search.load_search(str(tmp_path))
  assert saved["ended"] == result.ended and len(saved["records"]) == 1
  # The kept ensemble is the first iteration's: same test metrics, and the
  # SavedModel serves finite probabilities.
  fns = estimator_lib.input_fns(c, str(tmp_path))
  metrics = result.estimator.evaluate(fns.eval, steps=c.eval_steps,
                                      name="after")
  assert metrics["accuracy"] == result.records[0].test_accuracy
  # adanet's replay index: -1 = the previous ensemble took no member at t=1.
  assert metrics["best_ensemble_index_1"] == -1
  served = tf.saved_model.load(result.export_path).signatures[
      "serving_default"](image=tf.zeros((3, 8, 8, 1), tf.uint8))
  assert np.all(np.isfinite(served["probabilities"].numpy()))
  # Running the same command again stops the same way; nothing is retrained.
  again = search.run_search(c, str(tmp_path))
  assert again.diverged and again.ended == result.ended
  assert [r.iteration for r in again.records] == [0]


def test_every_candidate_diverging_at_once_is_one_line_exit_1(tmp_path):
  model_dir = tmp_path / "run"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  proc = forkserver.run(
      [sys.executable, "-m", "trainer.main", "--config.quick=True",
       f"--config.learning_rate={ABSURD:g}", f"--model_dir={model_dir}",
       "--progress_secs=0"], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-3000:]
  assert "iteration 1: every candidate diverged" in lines[0]
  assert "there is no ensemble to keep" in lines[0]
  assert "--config.learning_rate (now 1e+30)" in lines[0]
  saved = search.load_search(str(model_dir))
  assert saved["records"] == [] and "diverged" in saved["ended"]
  assert not os.path.exists(model_dir / "export")


def _cli(model_dir, *flags, preexec_fn=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  return forkserver.run(
      [sys.executable, "-m", "trainer.main", "--config.quick=True",
       "--config.generator=constant", "--noexport", "--progress_secs=0",
       f"--model_dir={model_dir}", *flags], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=600, preexec_fn=preexec_fn)


@pytest.mark.slow  # the fast suite: the full-disk case of test_model_dir_faults
def test_a_full_disk_while_checkpointing_is_one_line_and_damages_nothing(
    tmp_path):
  model_dir = tmp_path / "run"
  first = _cli(model_dir, "--config.max_iterations=1")
  assert first.returncode == 0, first.stderr[-3000:]
  before = tf.train.latest_checkpoint(str(model_dir))
  reader = tf.train.load_checkpoint(before)
  weights = {n: reader.get_tensor(n)
             for n in reader.get_variable_to_shape_map()}
  record = (model_dir / search.RECORDS_FILE).read_text()
  # The disk "fills up": no file may grow past the largest checkpoint file
  # there is, so the bigger checkpoint of the second iteration cannot be
  # written (the write fails as on a full disk, EFBIG instead of ENOSPC).
  limit = max(os.path.getsize(model_dir / name)
              for name in os.listdir(model_dir) if ".data-" in name)

  def full_disk():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

  full = _cli(model_dir, "--config.max_iterations=2", preexec_fn=full_disk)
  lines = full.stderr.strip().splitlines()
  assert full.returncode == 2, full.stderr[-3000:]
  assert len(lines) == 1, full.stderr[-3000:]
  assert lines[0].startswith(
      f"improve-nas: error: could not write to --model_dir={model_dir} "
      "(file too large); free space there and run the same command")
  assert "Traceback" not in full.stderr
  # Nothing is damaged: the last checkpoint and the record are as they were.
  assert tf.train.latest_checkpoint(str(model_dir)) == before
  reader = tf.train.load_checkpoint(before)
  for name, value in weights.items():
    np.testing.assert_array_equal(reader.get_tensor(name), value)
  assert (model_dir / search.RECORDS_FILE).read_text() == record
  # Space freed: the same command finishes the search.
  done = _cli(model_dir, "--config.max_iterations=2")
  assert done.returncode == 0, done.stderr[-3000:]
  assert [r.iteration for r in records_lib.load_records(str(model_dir))] == [0, 1]
