"""--distribution=mirrored: the search under MirroredStrategy, on 2 logical
CPU devices (each run in a process of its own: tests/mirrored_probe.py)."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The demo's search (dynamic generator, adaptive KD, learned mixture
# weights), tiny: 1@24 towers, 2 iterations.
FIELDS = ["initial_arch=1@24", "width_increment=24", "max_iterations=2",
          "steps_per_iteration=30", "selection_steps=2", "eval_steps=2",
          "use_aux_head=False"]


def _probe(tmp_path, name, cpu_devices):
  out = tmp_path / f"{name}.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tests", "mirrored_probe.py"),
       str(out), str(tmp_path / name), str(cpu_devices), *FIELDS],
      env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("mirrored")
  return {"mirrored": _probe(tmp, "mirrored", 2),
          "single": _probe(tmp, "single", 0)}


@pytest.mark.slow
def test_mirrored_search_finishes_with_replicas_identical(runs):
  report = runs["mirrored"]
  assert len(report["records"]) == 2
  training = [c for c in report["calls"] if len(c["losses"]) > 1]
  assert len(training) == 2  # one training call per iteration
  for call in report["calls"]:
    # Every variable of the iteration is mirrored on both devices, and
    # both copies are equal after training.
    assert call["mirrored_variables"] > 0
    assert call["unequal"] == [], call["unequal"][:5]


@pytest.mark.slow
def test_mirrored_loss_decreases(runs):
  for call in runs["mirrored"]["calls"]:
    losses = call["losses"]
    if len(losses) < 10:
      continue
    first = sum(sum(step) for step in losses[:5])
    last = sum(sum(step) for step in losses[-5:])
    assert last < first, losses


@pytest.mark.slow
def test_mirrored_matches_a_single_device_run(runs):
  # Same seed and global batch: the same candidates are proposed and
  # chosen, and the final accuracy agrees within 0.1. The replicas see the
  # same examples, augmentations and drop-path masks as one device, but
  # normalise with their own half's batch statistics, so the runs drift
  # apart like two seeds: on one device, seeds 42, 43 and 44 end at 0.359,
  # 0.25 and 0.312 here.
  mirrored_records = runs["mirrored"]["records"]
  single_records = runs["single"]["records"]
  assert ([r["candidates"] for r in mirrored_records] ==
          [r["candidates"] for r in single_records])
  assert ([r["chosen"] for r in mirrored_records] ==
          [r["chosen"] for r in single_records])
  assert abs(mirrored_records[-1]["test_accuracy"] -
             single_records[-1]["test_accuracy"]) <= 0.1


@pytest.mark.slow
def test_killed_mirrored_run_resumes(tmp_path):
  from test_resume import Run, _records  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "run")
  extra = ["--distribution=mirrored", "--cpu_devices=2", "--noexport"]
  first = Run(model_dir, "dynamic", extra).until(
      path=os.path.join(model_dir, "model.ckpt-4.index"), timeout=900)
  assert first.returncode == -signal.SIGKILL, first.output[-3000:]
  assert "mirrored over 2 device(s)" in first.output
  second = Run(model_dir, "dynamic", extra).until(timeout=900)
  assert second.returncode == 0, second.output[-3000:]
  assert re.search(r"resuming from model\.ckpt-\d+", second.output)
  assert [r["iteration"] for r in _records(model_dir)] == [0, 1]


def test_global_batch_must_split_evenly_over_the_replicas():
  from improve_nas import mirrored  # pylint: disable=g-import-not-at-top
  from improve_nas.errors import ConfigError  # pylint: disable=g-import-not-at-top
  assert mirrored.replica_batch_size(32, 2) == 16
  with pytest.raises(ConfigError, match="batch_size=30.*multiple of 4"):
    mirrored.replica_batch_size(30, 4)


def test_sessions_get_the_logical_cpu_devices_of_the_replicas():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas import mirrored  # pylint: disable=g-import-not-at-top
  assert mirrored.cpu_device_count(None) == 0
  # A strategy over the one default CPU needs no extra device.
  assert mirrored.cpu_device_count(
      tf.distribute.MirroredStrategy(["/cpu:0"])) == 0


def _replica_probe(*args):
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tests", "replica_probe.py"),
       *map(str, args)],
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("clip_norm", [0, 1.0])
def test_replicas_step_exactly_as_one_device_on_the_global_batch(clip_norm):
  # optimizers.momentum_train_op, mirrored over 2 logical CPU devices, each
  # replica on its half of the global batch, against one device on all of
  # it. With clip_norm=1 clipping binds at every step: the global
  # gradient's norm is clipped, not each replica's share.
  weights = _replica_probe("momentum", 2, clip_norm)
  assert weights["mirrored"] == pytest.approx(weights["single"], abs=1e-5)
  assert weights["single"] != pytest.approx([1.0, 1.0, 1.0], abs=0.1)


def test_replicas_drop_the_paths_one_device_would():
  # Each replica keeps its share of the global batch's drop-path noise:
  # the shares do not repeat one mask, and together they are one device's.
  outputs = _replica_probe("drop_path", 2)
  assert outputs["mirrored"] == outputs["single"]
  assert outputs["mirrored"][:8] != outputs["mirrored"][8:]
  assert set(outputs["single"]) == {0.0, 2.0}
