"""The command-line contract: bad input is one line on stderr, exit 2, and
nothing in the model_dir is touched."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flag,field,value", [
    ("--config.knowledge_distillation=teacher", "knowledge_distillation",
     "teacher"),
    ("--config.generator=random", "generator", "random"),
    ("--config.initial_arch=6@770", "initial_arch", "6@770"),
    ("--config.steps_per_iteration=0", "steps_per_iteration", "0"),
    ("--config.param_budget=10", "param_budget", "10"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, flag, field, value):
  model_dir = tmp_path / "existing"
  model_dir.mkdir()
  (model_dir / "keep.txt").write_text("precious")
  proc = _run("trainer.trainer", flag, f"--model_dir={model_dir}",
              "--overwrite")
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert field in lines[0] and value in lines[0]
  assert "Traceback" not in proc.stderr
  assert (model_dir / "keep.txt").read_text() == "precious"
  assert sorted(os.listdir(model_dir)) == ["keep.txt"]


def test_unknown_config_field_exits_2(tmp_path):
  proc = _run("trainer.trainer", "--config.no_such_field=1",
              f"--model_dir={tmp_path}")
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1
  assert "no_such_field" in proc.stderr


def test_missing_config_file_exits_2(tmp_path):
  proc = _run("trainer.trainer", f"--config={tmp_path}/nope.py",
              f"--model_dir={tmp_path}/run")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "nope.py" in lines[0]


def test_foreign_model_dir_is_refused(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  proc = _run("trainer.trainer", f"--model_dir={tmp_path}")
  assert proc.returncode == 2
  assert "--overwrite" in proc.stderr
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_arch_tool_prints_params_and_mult_adds():
  proc = _run("trainer.arch", "1@240", "2@48", "--num_classes=10")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert lines[0].split()[:3] == ["arch", "params", "params+aux"]
  row = lines[1].split()
  assert row[0] == "1@240"
  params, with_aux, mult_adds = (int(x.replace(",", "")) for x in row[1:4])
  assert params == 101_420 and with_aux > params and mult_adds > 0


def test_arch_tool_rejects_bad_arch():
  proc = _run("trainer.arch", "6@770")
  assert proc.returncode == 2
  assert proc.stderr.strip() == (
      "improve-nas-arch: error: arch '6@770': penultimate filters must be a "
      "multiple of 24 (try '6@768' or '6@792')")


def test_model_dir_of_another_config_is_refused_listing_every_field(tmp_path):
  from improve_nas import search  # pylint: disable=g-import-not-at-top
  from improve_nas.configs.demo import get_config  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  saved = get_config()
  saved.dataset = "cifar10"
  saved.knowledge_distillation = "none"
  config_json = saved.to_json(indent=1)
  (model_dir / search.CONFIG_FILE).write_text(config_json)
  proc = _run("trainer.trainer", f"--model_dir={model_dir}",
              "--config.max_iterations=1")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert "config.dataset='cifar10' (now 'sklearn_digits')" in lines[0]
  assert "config.knowledge_distillation='none' (now 'adaptive')" in lines[0]
  assert "max_iterations" not in lines[0]  # may change on resume
  assert "--overwrite" in lines[0]
  assert os.listdir(model_dir) == [search.CONFIG_FILE]
  assert (model_dir / search.CONFIG_FILE).read_text() == config_json


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_model_dir_that_is_or_sits_under_a_file_exits_2(tmp_path, where):
  blocker = tmp_path / "notes.txt"
  blocker.write_text("mine")
  model_dir = blocker if where == "file" else blocker / "run"
  proc = _run("trainer.trainer", f"--model_dir={model_dir}", "--overwrite")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "is a file" in lines[0], proc.stderr
  assert str(model_dir) in lines[0]
  assert blocker.read_text() == "mine"
