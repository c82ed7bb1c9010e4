"""The Keras engine's promises on bad input: one line, exit 2, nothing in
the model_dir changed; a model_dir of another config or engine refused."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

import keras_run
from keras_run import ROOT, Run


def _cli(*argv):
  return subprocess.run(
      [sys.executable, "-m", "trainer.main", *argv], cwd=ROOT,
      capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))


def _snapshot(model_dir):
  return {os.path.join(folder, name): os.stat(os.path.join(folder, name))
          .st_mtime_ns for folder, _, names in os.walk(model_dir)
          for name in names}


def _one_line_exit_2(proc, *words):
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("improve-nas: error: "), \
      proc.stderr[-2000:]
  assert "Traceback" not in proc.stdout + proc.stderr
  for word in words:
    assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished one-iteration search on the Keras engine."""
  model_dir = str(tmp_path_factory.mktemp("finished"))
  run = Run(model_dir, ["--config.max_iterations=1", "--noexport"]).until()
  assert run.returncode == 0, run.output[-3000:]
  return model_dir


def test_another_config_is_refused_and_nothing_changes(finished):
  before = _snapshot(finished)
  proc = _cli(*keras_run.FLAGS, "--config.max_iterations=1",
              "--config.learning_rate=0.5", f"--model_dir={finished}")
  _one_line_exit_2(proc, "config.learning_rate", "--overwrite")
  assert _snapshot(finished) == before


def test_the_adanet_engines_model_dir_is_refused(finished, tmp_path):
  # What the adanet engine leaves: config.json, no engine.json.
  adanet_dir = tmp_path / "adanet"
  adanet_dir.mkdir()
  with open(os.path.join(finished, "config.json")) as f:
    (adanet_dir / "config.json").write_text(f.read())
  before = _snapshot(str(adanet_dir))
  proc = _cli(*keras_run.FLAGS, "--config.max_iterations=1",
              f"--model_dir={adanet_dir}")
  _one_line_exit_2(proc, "adanet engine", "--engine=adanet")
  assert _snapshot(str(adanet_dir)) == before
  with open(os.path.join(finished, "engine.json")) as f:
    assert json.load(f) == {"engine": "keras"}


BAD = [
    (["--config.batch_size=0"], "config.batch_size"),
    (["--config.generator=greedy"], "config.generator"),
    (["--config.initial_arch=1@25"], "initial_arch"),
    (["--config.knowledge_distillation=teacher"], "knowledge_distillation"),
    (["--progress_secs=-1"], "--progress_secs"),
    (["--distribution=mirrored", "--cpu_devices=3"], "batch_size"),
    (["--cpu_devices=-1"], "--cpu_devices=-1"),
    (["--cpu_devices=2"], "--cpu_devices"),
    (["--config.dataset=no_such_dataset"], "no_such_dataset"),
]


@pytest.mark.parametrize("extra,word", BAD, ids=[w for _, w in BAD])
def test_bad_input_is_one_line_and_exit_2(extra, word, finished):
  before = _snapshot(finished)
  proc = _cli(*keras_run.FLAGS, "--config.max_iterations=1", *extra,
              f"--model_dir={finished}")
  _one_line_exit_2(proc, word)
  assert _snapshot(finished) == before


def test_a_model_dir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  _one_line_exit_2(_cli(*keras_run.FLAGS, f"--model_dir={path}"),
                   "is a file")


def test_a_search_whose_every_candidate_diverges_says_so(tmp_path):
  model_dir = tmp_path / "diverged"
  proc = _cli(*keras_run.FLAGS, "--config.max_iterations=1",
              "--config.learning_rate=1e30", "--config.clip_gradients=0",
              f"--model_dir={model_dir}")
  assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "Traceback" not in proc.stdout + proc.stderr
  assert "every candidate diverged" in proc.stderr
  assert "lower --config.learning_rate" in proc.stderr
  assert keras_run.records(str(model_dir)) == []


def test_a_damaged_checkpoint_is_set_aside_and_the_search_resumes(
    finished, tmp_path):
  model_dir = str(tmp_path / "copy")
  shutil.copytree(finished, model_dir)
  newest = os.path.join(model_dir, f"keras.ckpt-{keras_run.STEPS}")
  (data,) = glob.glob(newest + ".data-*")
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)
  run = Run(model_dir, ["--config.max_iterations=1", "--noexport"]).until()
  assert run.returncode == 0, run.output[-3000:]
  assert f"skipped checkpoint keras.ckpt-{keras_run.STEPS}" in run.output
  assert f"resuming from keras.ckpt-{keras_run.STEPS - 2}" in run.output
  assert os.listdir(os.path.join(model_dir, "damaged"))
  # The steps lost are trained again, to the same record.
  assert keras_run.summary(keras_run.records(model_dir)) == keras_run.summary(
      keras_run.records(finished))


def test_export_only_exports_the_last_finished_ensemble(finished, tmp_path):
  proc = _cli("--engine=keras", "--export_only", f"--model_dir={finished}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  (line,) = [l for l in proc.stdout.splitlines() if l.startswith("SavedModel")]
  path = line.split(": ", 1)[1]
  assert os.path.dirname(path) == os.path.join(finished, "export")
  assert "serving_default" in tf.saved_model.load(path).signatures
  _one_line_exit_2(_cli("--engine=keras", "--export_only",
                        f"--model_dir={tmp_path}"), "holds no config.json")
