"""Interruptions: a search killed with SIGKILL at any point, or stopped with
Ctrl-C, resumes with the same command and ends where an uninterrupted run
with the same seed ends; two runs with the same seed agree exactly.

Every process a test starts is killed by the test, pass or fail.
"""

import json
import os
import re
import signal
import sys

import pytest
import tensorflow as tf

from improve_nas import search
from killable import Process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8
# A search of tiny towers (adaptive KD, learned mixture weights), checkpointing
# every 4 steps; constant generator in the fast suite, dynamic (two candidates
# per iteration) with --runslow.
FLAGS = ["--config.image_size=8", "--config.initial_arch=1@24",
         "--config.width_increment=24", "--config.max_iterations=2",
         f"--config.steps_per_iteration={STEPS}", "--config.batch_size=8",
         "--config.eval_steps=2", "--config.selection_steps=2",
         "--config.shuffle_buffer=256", "--config.save_summary_steps=5",
         "--config.save_checkpoints_steps=4", "--config.use_aux_head=False",
         "--progress_secs=0.001"]


class Run(Process):
  """One `improve-nas` process; `until(pattern, sig)` sends `sig` when a line
  of its output matches, then waits for it to end."""

  def __init__(self, model_dir, generator, extra=()):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT,
               PYTHONUNBUFFERED="1")
    super().__init__(
        [sys.executable, "-m", "trainer.main", *FLAGS,
         f"--config.generator={generator}", f"--model_dir={model_dir}",
         *extra], cwd=ROOT, env=env)


def _records(model_dir):
  with open(os.path.join(model_dir, search.RECORDS_FILE)) as f:
    return json.load(f)["iterations"]  # strict JSON, never half-written


def _summary(records):
  """What must agree between runs: choices, and metrics as printed."""
  return [(r["iteration"], r["chosen"], r["ensemble_archs"],
           r["ensemble_params"], r["global_step"],
           f"{r['test_accuracy']:.4f}", f"{r['test_loss']:.4f}",
           [(x["name"], None if x["selection_loss"] is None
             else f"{x['selection_loss']:.4f}") for x in r["candidates"]],
           [f"{w:.4f}" for w in r["mixture_weights"]])
          for r in records]


def _choices(records):
  """What a resumed run must reproduce exactly: what was chosen, when."""
  return [(r["iteration"], [x["name"] for x in r["candidates"]], r["chosen"],
           r["ensemble_archs"], r["ensemble_params"], r["global_step"])
          for r in records]


def _losses(records):
  return [[r["test_loss"]] + [x["selection_loss"] for x in r["candidates"]
                              if x["selection_loss"] is not None]
          for r in records]


def _exports(model_dir):
  return sorted(os.listdir(os.path.join(model_dir, "export")))


_REFERENCES = {}


def _reference(generator, tmp_path_factory):
  """model_dir of an uninterrupted run (one per generator and session)."""
  if generator not in _REFERENCES:
    model_dir = str(tmp_path_factory.mktemp(f"reference_{generator}"))
    run = Run(model_dir, generator).until()
    assert run.returncode == 0, run.output[-3000:]
    _REFERENCES[generator] = model_dir
  return _REFERENCES[generator]


GENERATORS = ["constant", pytest.param("dynamic", marks=pytest.mark.slow)]


@pytest.mark.parametrize("generator", GENERATORS)
def test_killed_at_every_stage_resumes_to_the_uninterrupted_result(
    generator, tmp_path, tmp_path_factory):
  reference = _reference(generator, tmp_path_factory)
  model_dir = str(tmp_path / "run")
  # 1. Ctrl-C in the middle of iteration 1: a clean stop with a checkpoint.
  run = Run(model_dir, generator).until(r"iteration 1/2  step [2-5]/", signal.SIGINT)
  assert run.returncode == 130, run.output[-3000:]
  stop = re.search(r"stopped at step (\d+) of iteration 1; checkpoint "
                   r"saved; run the same command to resume", run.output)
  assert stop, run.output[-3000:]
  assert "Traceback" not in run.output
  step = int(stop.group(1))
  assert 2 <= step < STEPS
  assert tf.train.latest_checkpoint(model_dir).endswith(f"-{step}")
  # 2. SIGKILL while the finished iteration 1 is evaluated on the test split;
  #    the resumed run went on from the checkpoint, not from step 0.
  run = Run(model_dir, generator).until(r"iteration 1/2: evaluating the chosen")
  assert run.returncode == -signal.SIGKILL
  assert f"  resuming from model.ckpt-{step}\n" in run.output
  first = re.search(r"iteration 1/2  step (\d+)/", run.output)
  assert first and int(first.group(1)) > step, run.output[-3000:]
  assert _records(model_dir) == []
  # 3. SIGKILL in adanet's bookkeeping between iterations 1 and 2 (selection
  #    of iteration 1's best candidate, building the graph of iteration 2).
  run = Run(model_dir, generator).until(r"iteration 2/2: selecting the best candidate")
  assert len(_records(model_dir)) == 1
  # 4. SIGKILL mid-iteration 2: iteration 1 is not trained again.
  run = Run(model_dir, generator).until(r"iteration 2/2  step [5-7]/")
  assert "iteration 1/2  step" not in run.output
  assert len(_records(model_dir)) == 1
  # 5. SIGKILL during the export of the final ensemble.
  run = Run(model_dir, generator).until(
      path=os.path.join(model_dir, "export", ".staging"))
  assert len(_records(model_dir)) == 2
  # 6. The same command once more: it only exports.
  run = Run(model_dir, generator).until()
  assert run.returncode == 0, run.output[-3000:]
  assert " step " not in run.output
  resumed, uninterrupted = _records(model_dir), _records(reference)
  assert _choices(resumed) == _choices(uninterrupted)
  for r in resumed:  # complete records
    assert r["mixture_weights"] and r["eval_metrics"] and r["seconds"] > 0
    assert 0.0 <= r["test_accuracy"] <= 1.0
  # Every iteration (stopped and resumed mid-way, at its boundary, during
  # the export) is reproduced exactly: a run resumed mid-way through a later
  # iteration reads its data from where the uninterrupted one was.
  assert _summary(resumed)[0] == _summary(uninterrupted)[0]
  assert _summary(resumed) == _summary(uninterrupted)
  for a, b in zip(_losses(resumed), _losses(uninterrupted)):
    assert a == pytest.approx(b, abs=0.01)
  # One complete SavedModel; nothing half-written is left behind.
  [export] = _exports(model_dir)
  assert export.isdigit()
  served = tf.saved_model.load(os.path.join(model_dir, "export", export))
  assert "serving_default" in served.signatures


@pytest.mark.slow  # the fast suite: the first iteration of the test above
@pytest.mark.parametrize("generator", ["constant", "dynamic"])
def test_two_runs_with_one_seed_agree(generator, tmp_path, tmp_path_factory):
  reference = _reference(generator, tmp_path_factory)
  model_dir = str(tmp_path / "again")
  run = Run(model_dir, generator).until()
  assert run.returncode == 0, run.output[-3000:]
  assert _summary(_records(model_dir)) == _summary(_records(reference))
