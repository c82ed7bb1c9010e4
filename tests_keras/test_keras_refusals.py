"""The Keras engine's promises on bad input: one line, exit 2, nothing in
the model_dir changed; a model_dir of another config or engine refused.

The command lines run in one process that imports the command once and
forks a child per command line (tests/cli_battery.py), each on its own
copy of a finished search where it needs one."""

import glob
import json
import os
import shutil
import subprocess

import pytest
import tensorflow as tf

import keras_run
from keras_run import ROOT, Run
import killable


def _battery(command_lines, folder):
  """The results of `improve-nas` run with each argv of `command_lines`,
  in order, as subprocess.CompletedProcess."""
  results = killable.run_battery([{"argv": argv} for argv in command_lines],
                                 folder, ROOT)
  return [subprocess.CompletedProcess(argv, r["returncode"], r["stdout"],
                                      r["stderr"])
          for argv, r in zip(command_lines, results)]


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


@pytest.fixture(scope="module")
def refused(finished, tmp_path_factory):
  """{case: (model_dir, its files' times before, the command's result)}."""
  root = tmp_path_factory.mktemp("refused")
  search = [*keras_run.FLAGS, "--config.max_iterations=1"]
  cases = {}

  def copy(name):
    model_dir = str(root / name)
    shutil.copytree(finished, model_dir)
    return model_dir

  model_dir = copy("another_config")
  cases["another config"] = (model_dir, [*search, "--config.learning_rate=0.5",
                                         f"--model_dir={model_dir}"])
  # What the adanet engine leaves: config.json, no engine.json.
  adanet_dir = root / "adanet"
  adanet_dir.mkdir()
  with open(os.path.join(finished, "config.json")) as f:
    (adanet_dir / "config.json").write_text(f.read())
  cases["adanet engine"] = (str(adanet_dir),
                            [*search, f"--model_dir={adanet_dir}"])
  for extra, word in BAD:
    model_dir = copy(f"bad_{word.strip('-')}")
    cases[word] = (model_dir, [*search, *extra, f"--model_dir={model_dir}"])
  path = root / "file"
  path.write_text("x")
  cases["file"] = (str(path), [*keras_run.FLAGS, f"--model_dir={path}"])
  diverged = str(root / "diverged")
  cases["diverges"] = (diverged, [
      *search, "--config.learning_rate=1e30", "--config.clip_gradients=0",
      f"--model_dir={diverged}"])
  model_dir = copy("export_only")
  cases["export_only"] = (model_dir, ["--engine=keras", "--export_only",
                                      f"--model_dir={model_dir}"])
  empty = root / "empty"
  empty.mkdir()
  cases["export_only, no search"] = (str(empty), [
      "--engine=keras", "--export_only", f"--model_dir={empty}"])
  before = {name: _snapshot(model_dir) for name, (model_dir, _) in
            cases.items()}
  results = _battery([argv for _, argv in cases.values()], root)
  return {name: (model_dir, before[name], result)
          for (name, (model_dir, _)), result in zip(cases.items(), results)}


def test_another_config_is_refused_and_nothing_changes(refused):
  model_dir, before, proc = refused["another config"]
  _one_line_exit_2(proc, "config.learning_rate", "--overwrite")
  assert _snapshot(model_dir) == before


def test_the_adanet_engines_model_dir_is_refused(refused, finished):
  model_dir, before, proc = refused["adanet engine"]
  _one_line_exit_2(proc, "adanet engine", "--engine=adanet")
  assert _snapshot(model_dir) == before
  with open(os.path.join(finished, "engine.json")) as f:
    assert json.load(f) == {"engine": "keras"}


@pytest.mark.parametrize("extra,word", BAD, ids=[w for _, w in BAD])
def test_bad_input_is_one_line_and_exit_2(extra, word, refused):
  del extra  # (the case is named by its word)
  model_dir, before, proc = refused[word]
  _one_line_exit_2(proc, word)
  assert _snapshot(model_dir) == before


def test_a_model_dir_that_is_a_file_is_one_line(refused):
  _one_line_exit_2(refused["file"][2], "is a file")


def test_a_search_whose_every_candidate_diverges_says_so(refused):
  model_dir, _, proc = refused["diverges"]
  assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "Traceback" not in proc.stdout + proc.stderr
  assert "every candidate diverged" in proc.stderr
  assert "lower --config.learning_rate" in proc.stderr
  assert keras_run.records(model_dir) == []


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


def test_export_only_exports_the_last_finished_ensemble(refused):
  model_dir, _, proc = refused["export_only"]
  assert proc.returncode == 0, proc.stderr[-2000:]
  (line,) = [l for l in proc.stdout.splitlines() if l.startswith("SavedModel")]
  path = line.split(": ", 1)[1]
  assert os.path.dirname(path) == os.path.join(model_dir, "export")
  assert "serving_default" in tf.saved_model.load(path).signatures
  _one_line_exit_2(refused["export_only, no search"][2],
                   "holds no config.json")
