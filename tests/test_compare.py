"""improve-nas-compare: a study's files and table from known records, refusals,
a killed study that continues, and single towers sized after an ensemble."""

import csv
import dataclasses
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from improve_nas import compare
from improve_nas import config as config_lib
from improve_nas import lock as lock_lib
from improve_nas import records
from improve_nas import study as study_lib
from improve_nas.errors import ConfigError

import forkserver

# A tiny search: one iteration of one 1@24 tower on 8x8 digits.
TINY = ("generator=constant initial_arch=1@24 max_iterations=1 "
        "steps_per_iteration=3 batch_size=8 use_aux_head=False eval_steps=1 "
        "selection_steps=1 image_size=8")
ARMS = [f"small=demo {TINY}", f"nokd=demo {TINY} knowledge_distillation=none"]
# Known outcomes: arm -> seed -> (accuracy, params, train mult-adds, wall).
KNOWN = {"small": {1: (0.5, 1000, 3e9, 10.0), 2: (0.7, 1000, 3e9, 14.0)},
         "nokd": {1: (0.6, 2000, 5e9, 20.0), 2: (0.6, 2000, 5e9, 22.0)}}


def _compare(*flags, timeout=600):
  return forkserver.run([sys.executable, "-m", "trainer.compare", *flags],
                        capture_output=True, text=True, timeout=timeout)


def _study(out, arms=ARMS, seeds=(1, 2)):
  """The Study the command builds from these flags, saved as it saves it."""
  study = study_lib.Study("custom", [study_lib.parse_arm(a) for a in arms],
                          list(seeds), {})
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, compare.STUDY_FILE), "w") as f:
    json.dump(study.to_dict(), f)
  return study


def _fake_run(runner, arm, seed, accuracy, params, mult_adds, wall):
  """A finished search's files: search.json, config.json and the study's
  record of the run."""
  model_dir = runner.model_dir(arm.name, seed)
  os.makedirs(model_dir)
  config = study_lib.load_config(arm.config, {**arm.overrides, "seed": seed})
  with open(os.path.join(model_dir, records.CONFIG_FILE), "w") as f:
    f.write(config.to_json())
  record = records.IterationRecord(
      iteration=0, candidates=[records.CandidateRecord(
          "nasnet_1x24", "1@24", "constant", params, None,
          test_accuracy=accuracy)],
      chosen="nasnet_1x24", ensemble_archs=["1@24"], ensemble_params=params,
      test_accuracy=accuracy, test_loss=1.0, global_step=3, seconds=wall,
      member_accuracies=[accuracy], ensemble_gain=0.0,
      train_mult_adds=int(mult_adds))
  records.write_records(model_dir, [record], None)
  with open(model_dir + ".json", "w") as f:
    json.dump({"outcome": "finished", "wall_seconds": wall, "attempts": 1},
              f)


def _known_study(out):
  study = _study(out)
  runner = compare.StudyRunner(study, out)
  for arm in study.arms:
    for seed in study.seeds:
      _fake_run(runner, arm, seed, *KNOWN[arm.name][seed])
  return study


def _hparams_sessions(root):
  """{run directory: {hparam: value}} read back with TensorBoard's reader."""
  sessions = {}
  for path in glob.glob(os.path.join(root, "**", "events.out.*"),
                        recursive=True):
    acc = event_accumulator.EventAccumulator(path)
    acc.Reload()
    for content in acc.PluginTagToContent("hparams").values():
      data = plugin_data_pb2.HParamsPluginData.FromString(content)
      if data.HasField("session_start_info"):
        values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                  for k, v in data.session_start_info.hparams.items()}
        scalars = {t: float(tf.make_ndarray(acc.Tensors(t)[0].tensor_proto))
                   for t in acc.Tags()["tensors"] if t.startswith("final/")}
        sessions[os.path.relpath(os.path.dirname(path), root)] = (values,
                                                                  scalars)
  return sessions


def test_command_writes_files_and_a_correct_table_from_known_records(
    tmp_path):
  out = str(tmp_path / "study")
  _known_study(out)
  proc = _compare(*[f"--arm={a}" for a in ARMS], "--seeds=1,2", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "starting" not in proc.stdout  # every run was known: none ran
  lines = {l.split()[0]: l for l in proc.stdout.splitlines()
           if l.split() and l.split()[0] in KNOWN}
  for arm, runs in KNOWN.items():
    accs = [runs[s][0] for s in (1, 2)]
    mean, std = np.mean(accs), np.std(accs, ddof=1)
    cells = lines[arm].split()
    assert cells[1:3] == [f"{a:.4f}" for a in accs]
    assert cells[3:6] == [f"{mean:.4f}", "+-", f"{std:.4f}"]
    assert cells[6] == f"{runs[1][1]:,}"
    assert cells[9] == f"{runs[1][2] / 1e9:,.1f}G"
    assert cells[10] == f"{np.mean([runs[s][3] for s in (1, 2)]):.0f}s"
  with open(os.path.join(out, "compare.json")) as f:
    saved = json.load(f)
  assert [a["arm"] for a in saved["arms"]] == list(KNOWN)
  small = saved["arms"][0]
  assert small["accuracy_mean"] == pytest.approx(0.6)
  assert small["accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
  assert [r["test_accuracy"] for r in small["runs"]] == [0.5, 0.7]
  assert small["runs"][0]["candidate_steps"] == 3
  with open(os.path.join(out, "compare.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["arm"] for r in rows] == list(KNOWN)
  assert float(rows[1]["accuracy_mean"]) == pytest.approx(0.6)
  assert float(rows[1]["accuracy_std"]) == 0.0
  assert float(rows[1]["train_mult_adds_mean"]) == 5e9
  for name in ("accuracy_vs_params.png", "accuracy_vs_compute.png"):
    png = tf.io.decode_png(tf.io.read_file(os.path.join(out, name))).numpy()
    assert png.shape[0] > 100 and len(np.unique(png.reshape(-1, 4), axis=0)) > 10
  sessions = _hparams_sessions(os.path.join(out, "hparams"))
  assert set(sessions) == {f"{a}/seed_{s}" for a in KNOWN for s in (1, 2)}
  values, scalars = sessions["nokd/seed_2"]
  # The fields that differ between arms are hparams; shared ones are not.
  assert values["arm"] == "nokd" and values["seed"] == 2
  assert values["knowledge_distillation"] == "none"
  assert "initial_arch" not in values
  assert scalars["final/test_accuracy"] == pytest.approx(0.6)
  assert scalars["final/ensemble_params"] == 2000


def test_refuses_another_study_and_bad_arms(tmp_path):
  out = str(tmp_path / "study")
  _known_study(out)
  with open(os.path.join(out, compare.STUDY_FILE)) as f:
    before = f.read()
  # From the command line: one line, exit status 2.
  for flags, expected in [
      ([f"--arm={ARMS[0]}", "--seeds=1,2"], "with other arms"),
      (["--arm=x=demo no_such_field=1"], "has no field 'no_such_field'")]:
    proc = _compare(*flags, f"--out={out}")
    assert proc.returncode == 2, (flags, proc.stderr[-2000:])
    error = proc.stderr.strip()
    assert error.count("\n") == 0 and "Traceback" not in error, error
    assert expected in error, (expected, error)
  # The same checks, in the library the command calls.
  cases = [
      (lambda: _study_of([*ARMS], (1, 2, 3)), "with other seeds"),
      (lambda: _study_of(["x=no_such_config"]), "no such shipped config"),
      (lambda: _study_of(["x=demo batch_size=many"]), "batch_size='many'"),
      (lambda: _study_of(["x=demo tower_of=y"]), "names no arm"),
      (lambda: _study_of(["x=demo", "x=demo"]), "given twice"),
      (lambda: study_lib.parse_arm("noconfig"), "expected 'NAME=CONFIG"),
      (lambda: study_lib.builtin_study("nosuch", [1]), "--study='nosuch'"),
      (lambda: compare.StudyRunner(compare.load_study(out), out, parallel=0),
       "--parallel=0"),
  ]

  def _study_of(arms, seeds=(1, 2)):
    study = study_lib.Study("custom", [study_lib.parse_arm(a) for a in arms],
                            list(seeds), {})
    compare.StudyRunner(study, out).prepare()

  for call, expected in cases:
    with pytest.raises(ConfigError, match=re.escape(expected)):
      call()
  # A study directory another runner holds: refused, naming the holder.
  with lock_lib.ModelDirLock(out, role="study", flag="--out"):
    proc = _compare(*[f"--arm={a}" for a in ARMS], "--seeds=1,2",
                    f"--out={out}")
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert proc.stderr.strip().count("\n") == 0, proc.stderr
  assert (f"--out={out!r} is in use by pid {os.getpid()} on "
          f"{socket.gethostname()} (study since ") in proc.stderr
  with open(os.path.join(out, compare.STUDY_FILE)) as f:
    assert f.read() == before
  assert not os.path.exists(os.path.join(out, "runs", "x"))


def _start(flags):
  return forkserver.Popen([sys.executable, "-m", "trainer.compare", *flags],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _wait_for_checkpoint(proc, model_dir, after=0):
  """Waits until `model_dir` has a checkpoint past step `after`."""
  deadline = time.time() + 300
  while True:
    steps = [int(p.rsplit("-", 1)[1].split(".")[0]) for p in
             glob.glob(os.path.join(model_dir, "model.ckpt-*.index"))]
    if steps and max(steps) > after:
      return max(steps)
    assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
    time.sleep(0.2)


def test_stopped_or_killed_study_continues_without_rerunning_finished_runs(
    tmp_path):
  out = str(tmp_path / "study")
  arms = [ARMS[0], f"real=demo {TINY} steps_per_iteration=400 "
                   "save_checkpoints_steps=10"]
  study = _study(out, arms, seeds=(1,))
  runner = compare.StudyRunner(study, out)
  _fake_run(runner, study.arms[0], 1, *KNOWN["small"][1])
  flags = [*[f"--arm={a}" for a in arms], "--seeds=1", f"--out={out}"]
  real = runner.model_dir("real", 1)

  # Ctrl-C: the search stops at a checkpoint, the study says how to go on.
  proc = _start(flags)
  _wait_for_checkpoint(proc, real)
  proc.send_signal(signal.SIGINT)
  output, _ = proc.communicate(timeout=120)
  assert proc.returncode == 130, output[-3000:]
  assert "run the same command to continue" in output
  table = output.split("\n\n")[1].splitlines()
  assert [l.split()[:2] for l in table if l.startswith("real")] == [
      ["real", "pending"]]  # the table says it is not done
  with open(real + ".json") as f:
    assert json.load(f)["outcome"] == "stopped"
  stopped_at = max(int(p.rsplit("-", 1)[1].split(".")[0]) for p in
                   glob.glob(os.path.join(real, "model.ckpt-*.index")))
  assert 0 < stopped_at < 400

  # SIGKILL: no clean stop, for the study nor (with it) its search.
  proc = _start(flags)
  _wait_for_checkpoint(proc, real, after=stopped_at)
  proc.kill()
  proc.wait()
  deadline = time.time() + 30
  while _search_running(real):
    assert time.time() < deadline, "the search outlived the killed study"
    time.sleep(0.5)

  result = _compare(*flags)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "real seed 1: resuming" in result.stdout
  assert "small seed 1" not in result.stdout.split("\n\n")[0]  # not rerun
  with open(runner.model_dir("small", 1) + ".json") as f:
    assert json.load(f)["attempts"] == 1
  with open(real + ".json") as f:
    state = json.load(f)
  assert state["outcome"] == "finished" and state["attempts"] == 2
  with open(real + ".log") as f:
    assert f.read().count("resuming from model.ckpt-") == 2
  final = records.load_records(real)[-1]
  assert final.global_step == 400
  assert f"{final.test_accuracy:.4f}" in result.stdout


def _search_running(model_dir):
  for pid in os.listdir("/proc"):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        if f"--model_dir={model_dir}".encode() in f.read():
          return True
    except OSError:
      continue
  return False


def test_tower_is_the_largest_that_fits_and_takes_the_schedule():
  counts = {}

  def count(arch):  # parameters grow with N and with P squared
    n, p = (int(x) for x in arch.split("@"))
    counts[arch] = n * 100 + p * p
    return counts[arch]

  arch = study_lib.size_tower(50_000, count)
  n, p = (int(x) for x in arch.split("@"))
  assert count(arch) <= 50_000
  assert all(count(f"{m}@{q}") > 50_000 or count(f"{m}@{q}") <= count(arch)
             for m in range(1, 7) for q in range(24, 480, 24))
  with pytest.raises(ConfigError, match="at most 10"):
    study_lib.size_tower(10, count)
  base = study_lib.parse_arm("ens=demo steps_per_iteration=200")
  # A config.json of a quick run of `base`: quick mode's fields applied.
  resolved = json.loads(config_lib.apply_quick(study_lib.load_config(
      "demo", {"steps_per_iteration": 200, "quick": True})).to_json())
  assert resolved["steps_per_iteration"] == 3 and resolved["batch_size"] == 8
  for schedule, steps in (("member", 3), ("total", 6)):
    arm = study_lib.Arm("t", "demo", tower_of="ens", schedule=schedule)
    overrides = study_lib.tower_arm_overrides(arm, base, resolved, 50_000,
                                              count)
    assert overrides["steps_per_iteration"] == steps
    assert overrides["initial_arch"] == arch
    assert overrides["max_iterations"] == 1
    assert overrides["generator"] == "constant"
    assert overrides["quick"] is False  # the quick fields are kept as such
    assert overrides["batch_size"] == 8


def test_builtin_demo_study_flips_each_ablation():
  demo = study_lib.load_config("demo")
  study = study_lib.builtin_study("demo", [1, 2, 3])
  names = [a.name for a in study.arms]
  assert names[:3] == ["demo", "tower_member", "tower_total"]
  flips = {a.name: a.overrides for a in study.arms[3:]}
  kd = {v["knowledge_distillation"] for v in flips.values()
        if "knowledge_distillation" in v}
  assert kd | {demo.knowledge_distillation} == {"none", "adaptive",
                                                "born_again"}
  assert {"learn_mixture_weights": not demo.learn_mixture_weights} in \
      flips.values()
  assert any(v.get("generator") not in (None, demo.generator)
             for v in flips.values())
  paper = study_lib.builtin_study("paper:cifar100", [1])
  assert [a.config for a in paper.arms][0] == "paper:cifar100,nokd"
  assert dataclasses.asdict(study.arms[1])["tower_of"] == "demo"
