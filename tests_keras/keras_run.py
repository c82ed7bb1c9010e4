"""`improve-nas --engine=keras` as the tests run it: a tiny search, and a
process that can be killed when a line or a file appears."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The process helper both suites share.
sys.path.insert(0, os.path.join(ROOT, "tests"))
from killable import Process  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
STEPS = 6
# Tiny towers on 8x8 digits: the dynamic generator (two candidates per
# iteration after the first), adaptive KD, learned mixture weights, a small
# auxiliary head, a checkpoint every 2 steps.
FLAGS = ["--engine=keras", "--config.image_size=8",
         "--config.initial_arch=1@24", "--config.generator=dynamic",
         "--config.width_increment=24", "--config.max_iterations=2",
         f"--config.steps_per_iteration={STEPS}", "--config.batch_size=8",
         "--config.eval_steps=3", "--config.selection_steps=2",
         "--config.shuffle_buffer=256", "--config.save_summary_steps=2",
         "--config.save_checkpoints_steps=2",
         "--config.learn_mixture_weights=True",
         "--config.aux_head_bottleneck=8", "--config.aux_head_filters=16",
         "--progress_secs=0.001"]


class Run(Process):
  """One `improve-nas --engine=keras` process (stderr apart from the lines
  matched); see killable.Process.until."""

  def __init__(self, model_dir, extra=()):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT,
               PYTHONUNBUFFERED="1")
    super().__init__(
        [sys.executable, "-m", "trainer.main", *FLAGS,
         f"--model_dir={model_dir}", *extra], cwd=ROOT, env=env,
        merge_stderr=False)


def records(model_dir):
  with open(os.path.join(model_dir, "search.json")) as f:
    return json.load(f)["iterations"]


def summary(records_):
  """Everything a seeded run must repeat: choices, losses, weights, metrics
  (not the times)."""
  timing = {"seconds", "train_seconds", "steps_per_second"}
  return [{k: v for k, v in r.items() if k not in timing} for r in records_]
