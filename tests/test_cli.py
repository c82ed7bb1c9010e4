"""The command-line contract: bad input is one line on stderr, exit 2, and
nothing in the model_dir is touched (most cases: test_bad_input.py)."""

import os
import sys

import pytest

import forkserver


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  return forkserver.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


def test_foreign_model_dir_is_refused(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  proc = _run("trainer.main", f"--model_dir={tmp_path}")
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
  params, with_aux, mult_adds, with_aux_adds = (int(x.replace(",", ""))
                                                 for x in row[1:5])
  assert params == 101_420 and with_aux > params and mult_adds > 0
  assert with_aux_adds > mult_adds
  # A smaller auxiliary head: the same tower, a smaller training cost.
  proc = _run("trainer.arch", "1@240", "--aux_head_bottleneck=16",
              "--aux_head_filters=32")
  small = [int(x.replace(",", "")) for x in
           proc.stdout.strip().splitlines()[1].split()[1:5]]
  assert small[0] == params and small[2] == mult_adds
  assert params < small[1] < with_aux and mult_adds < small[3] < with_aux_adds
  proc = _run("trainer.arch", "1@240", "--aux_head_filters=0")
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1
  assert "aux_head_filters (128, 0)" in proc.stderr


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
  proc = _run("trainer.main", f"--model_dir={model_dir}",
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


def test_shipped_configs_go_by_name(tmp_path):
  from improve_nas import configs  # pylint: disable=g-import-not-at-top
  demo_file = configs.path("demo")
  assert os.path.isfile(demo_file) and os.path.isabs(demo_file)
  assert configs.resolve_argv(
      ["improve-nas", "--config=paper:cifar10,w_akd", "--config.quick=True",
       "--config", "demo", "--config=runs/mine.py:x"]) == [
           "improve-nas", f"--config={configs.path('paper')}:cifar10,w_akd",
           "--config.quick=True", "--config", demo_file,
           "--config=runs/mine.py:x"]
  # A file of the user's that happens to be called like a shipped config
  # (relative to the working directory) wins over the name.
  (tmp_path / "demo").write_text("")
  here = os.getcwd()
  os.chdir(tmp_path)
  try:
    assert configs.resolve("demo") == "demo"
  finally:
    os.chdir(here)
  with pytest.raises(ValueError, match="demo, paper"):
    configs.path("nasnet")


def test_a_field_overridden_twice_takes_the_last_value():
  # (test_bad_input runs it on the command line)
  from improve_nas import configs  # pylint: disable=g-import-not-at-top
  assert configs.resolve_argv(
      ["improve-nas", "--config.max_iterations=5", "--model_dir=x",
       "--config.seed", "1", "--config.max_iterations=2", "--config.quick",
       "--config.seed", "7"]) == [
           "improve-nas", "--model_dir=x", "--config.max_iterations=2",
           "--config.quick", "--config.seed", "7"]


def test_a_config_json_from_before_the_renaming_still_resumes(tmp_path):
  """config.evaluator_steps is config.selection_steps now; a model_dir
  written before still matches the config it was started with."""
  import json  # pylint: disable=g-import-not-at-top
  from improve_nas import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  from improve_nas import records  # pylint: disable=g-import-not-at-top
  from improve_nas.configs import demo  # pylint: disable=g-import-not-at-top
  from improve_nas.errors import ConfigError  # pylint: disable=g-import-not-at-top
  c = demo.get_config()
  old = json.loads(c.to_json())
  old["evaluator_steps"] = old.pop("selection_steps")
  (tmp_path / records.CONFIG_FILE).write_text(json.dumps(old))
  saved, damaged = model_dir_lib.saved_config(str(tmp_path))
  assert damaged is None and saved["selection_steps"] == c.selection_steps
  assert "evaluator_steps" not in saved
  records.check_model_dir(c, str(tmp_path))  # the same search: resumes
  c.selection_steps += 1  # may change between runs, as it could before
  records.check_model_dir(c, str(tmp_path))
  c.learning_rate = 0.1
  with pytest.raises(ConfigError, match="config.learning_rate=0.05 "):
    records.check_model_dir(c, str(tmp_path))


def test_a_keras_engine_model_dir_is_refused_by_the_adanet_engine(tmp_path):
  from improve_nas import records  # pylint: disable=g-import-not-at-top
  from improve_nas.configs.demo import get_config  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / records.CONFIG_FILE).write_text(get_config().to_json(indent=1))
  records.write_engine(str(model_dir), "keras")
  before = sorted(os.listdir(model_dir))
  proc = _run("trainer.main", f"--model_dir={model_dir}")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert "holds a search of the keras engine" in lines[0]
  assert "--engine=keras" in lines[0] and "--overwrite" in lines[0]
  assert sorted(os.listdir(model_dir)) == before
