"""The paper's experiment configs: each row's settings, its documented
command and result, and a quick-mode search for every one of them on mocked
CIFAR data (no download)."""

import os
import re

import numpy as np
import pytest

from improve_nas import config as config_lib
from improve_nas import search
from improve_nas.configs import paper
from improve_nas.errors import ConfigError

from test_cli import _run
from test_data import _logits_classes, fake_prepared_tfds, mock_tfds

ALL = [(d, row) for d in paper.DATASETS for row in paper.ROWS]
# The fast suite runs one quick search, a baseline on CIFAR-100 (the method's
# parts run in test_search, test_monitoring, test_resume and test_faults);
# `make test-all` (--runslow) runs all 22.
FAST = {("cifar100", "nasnet_6x768")}


def test_rows_have_the_papers_settings():
  for dataset, row in ALL:
    c = paper.get_config(f"{dataset},{row}")
    config_lib.validate(c)
    assert c.dataset == dataset
    # Shared hyperparameters of every row (paper, section 4).
    assert (c.batch_size, c.learning_rate, c.momentum, c.clip_gradients,
            c.weight_decay, c.label_smoothing, c.steps_per_iteration) == (
                32, 0.025, 0.9, 5.0, 5e-4, 0.1, 1_000_000)
    assert c.cutout_size == 16 and c.random_flip and not c.quick
    if row.startswith("nasnet_"):
      assert c.max_iterations == 1 and c.generator == "constant"
      assert c.initial_arch == row[len("nasnet_"):].replace("x", "@")
    elif row.startswith("gd"):
      assert c.generator == "dynamic" and c.param_budget == 33_000_000
      assert c.initial_arch == ("6@768" if row.startswith("gd6") else "1@240")
      assert c.width_increment == 240 and c.depth_increment == 1
    else:
      assert c.generator == "constant" and c.initial_arch == "6@768"
      assert c.max_iterations == 10 and c.param_budget == 0
    kd = {"nokd": "none", "akd": "adaptive", "ban": "born_again"}[
        row.split("_")[-1] if not row.startswith("nasnet") else "nokd"]
    assert c.knowledge_distillation == kd
    assert c.learn_mixture_weights == row.startswith("w_")


def test_docstring_gives_each_rows_command_and_result():
  doc = paper.__doc__
  assert "improve-nas --config=paper:DATASET,ROW" in doc
  for row in paper.ROWS:
    line = next(l for l in doc.splitlines() if l.strip().startswith(row + " "))
    numbers = re.findall(r"\d+\.\d\d", line)
    assert numbers[-2:] == [f"{paper.paper_error('cifar10', row):.2f}",
                            f"{paper.paper_error('cifar100', row):.2f}"], line


def test_bad_row_is_one_line_exit_2(tmp_path):
  with pytest.raises(ConfigError, match="ROW one of"):
    paper.get_config("cifar10,best")
  proc = _run("trainer.main",
              "--config=improve_nas/configs/paper.py:cifar10,best",
              f"--model_dir={tmp_path / 'run'}")
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert "cifar10,best" in proc.stderr and not (tmp_path / "run").exists()


def test_paper_config_loads_on_the_command_line(tmp_path):
  # No data prepared: the config loads by its shipped name, quick mode
  # applies, and the search stops before training with the data message.
  proc = _run("trainer.main", "--config=paper:cifar100,gd1_akd",
              "--config.quick=True", f"--config.data_dir={tmp_path}",
              f"--model_dir={tmp_path / 'run'}")
  assert proc.returncode == 2, proc.stderr
  assert "'cifar100' is not prepared" in proc.stderr
  assert proc.stderr.count("\n") == 1


def test_quick_mode_shrinks_but_keeps_the_experiment():
  c = paper.get_config("cifar100,gd6_akd")
  c.quick = True
  q = config_lib.apply_quick(c)
  assert (q.initial_arch, q.image_size, q.max_iterations) == ("1@24", 8, 2)
  assert q.steps_per_iteration <= 5 and q.param_budget > 0
  assert (q.dataset, q.generator, q.knowledge_distillation,
          q.learn_mixture_weights, q.use_aux_head) == (
              "cifar100", "dynamic", "adaptive", False, True)
  assert c.initial_arch == "6@768"  # the original is untouched
  assert config_lib.apply_quick(q).to_dict() == q.to_dict()


@pytest.mark.parametrize(
    "dataset,row",
    [pytest.param(d, r, marks=() if (d, r) in FAST else pytest.mark.slow,
                  id=f"{d}-{r}") for d, r in ALL])
def test_every_paper_config_runs_in_quick_mode(tmp_path, dataset, row):
  data_dir = str(tmp_path / "data")
  fake_prepared_tfds(data_dir, dataset, {"train": 64, "test": 16})
  c = paper.get_config(f"{dataset},{row}")
  c.quick = True
  c.data_dir = data_dir
  model_dir = str(tmp_path / "run")
  with mock_tfds(data_dir, num_examples=32):
    result = search.run_search(c, model_dir)
  q = config_lib.apply_quick(c)
  assert result.ended is None
  assert [r.iteration for r in result.records] == list(
      range(q.max_iterations))
  last = result.records[-1]
  assert last.global_step == q.max_iterations * q.steps_per_iteration
  assert len(last.mixture_weights) == q.max_iterations
  if not c.learn_mixture_weights:
    assert last.mixture_weights == [1 / q.max_iterations] * q.max_iterations
  assert 0 <= last.test_accuracy <= 1 and np.isfinite(last.test_loss)
  expected = 2 if c.generator == "dynamic" else 1
  assert all(len(r.candidates) == expected for r in result.records)
  assert os.path.exists(os.path.join(model_dir, search.CONFIG_FILE))
  assert _logits_classes(model_dir) == {10 if dataset == "cifar10" else 100}
