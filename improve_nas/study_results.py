"""A study's results: each search's outcome read from its model_dir, the
per-arm summary (mean and standard deviation over seeds), the console table
and the files (compare.json, compare.csv, two plots, TensorBoard HParams).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Dict, List, Optional

from improve_nas import records as records_lib
from improve_nas.study import Study

__all__ = ["RunResult", "ArmSummary", "summarize", "read_result",
           "format_table", "write_outputs", "write_hparams", "write_text_atomic",
           "HPARAMS_DIR"]

HPARAMS_DIR = "hparams"
_METRICS = ("test_accuracy", "ensemble_params", "ensemble_gain",
            "train_mult_adds", "wall_seconds")


@dataclasses.dataclass
class RunResult:
  """One finished (or failed) search of a study."""

  arm: str
  seed: int
  state: str                      # finished | ended | failed | pending
  test_accuracy: Optional[float] = None
  ensemble_params: Optional[int] = None
  ensemble_archs: List[str] = dataclasses.field(default_factory=list)
  member_accuracies: List[Optional[float]] = dataclasses.field(
      default_factory=list)
  ensemble_gain: Optional[float] = None
  iterations: int = 0
  steps_per_member: int = 0
  candidate_steps: int = 0        # every candidate's steps, all iterations
  train_mult_adds: int = 0        # training compute (see IterationRecord)
  wall_seconds: float = 0.0       # the searches' processes, all attempts
  message: str = ""               # why it ended or failed, if it did
  config: Dict[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ArmSummary:
  """An arm's runs, and mean and standard deviation over its seeds."""

  arm: str
  runs: List[RunResult]
  accuracy_mean: Optional[float]
  accuracy_std: Optional[float]
  params_mean: Optional[float]
  steps_per_member: int
  candidate_steps_mean: Optional[float]
  train_mult_adds_mean: Optional[float]
  wall_seconds_mean: Optional[float]


def _mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, 0.0
  var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
  return mean, math.sqrt(var)


def summarize(study: Study, results: List[RunResult]) -> List[ArmSummary]:
  """Per arm (in study order): its runs by seed, means and std (sample
  standard deviation over the seeds that finished)."""
  out = []
  for arm in study.arms:
    runs = sorted((r for r in results if r.arm == arm.name),
                  key=lambda r: r.seed)
    done = [r for r in runs if r.state in ("finished", "ended")]
    acc_mean, acc_std = _mean_std([r.test_accuracy for r in done])
    out.append(ArmSummary(
        arm=arm.name, runs=runs, accuracy_mean=acc_mean,
        accuracy_std=acc_std,
        params_mean=_mean_std([r.ensemble_params for r in done])[0],
        steps_per_member=done[0].steps_per_member if done else 0,
        candidate_steps_mean=_mean_std([r.candidate_steps for r in done])[0],
        train_mult_adds_mean=_mean_std([r.train_mult_adds for r in done])[0],
        wall_seconds_mean=_mean_std([r.wall_seconds for r in done])[0]))
  return out


def read_result(arm: str, seed: int, model_dir: str,
                wall_seconds: float, state: str = "finished",
                message: str = "") -> RunResult:
  """The RunResult of the search in `model_dir` (its search.json and
  config.json)."""
  result = RunResult(arm=arm, seed=seed, state=state,
                     wall_seconds=round(wall_seconds, 1), message=message)
  try:
    saved = records_lib.load_search(model_dir) if os.path.isdir(model_dir) \
        else None
    config = records_lib.load_saved_config(model_dir) or {}
  except records_lib.DamagedFile as e:
    result.state, result.message = "failed", str(e)
    return result
  result.config = config
  if not saved or not saved["records"]:
    if state in ("finished", "ended"):
      result.state, result.message = "failed", message or "no iteration"
    return result
  records = saved["records"]
  final = records[-1]
  steps = int(config.get("steps_per_iteration", 0))
  result.test_accuracy = round(final.test_accuracy, 6)
  result.ensemble_params = final.ensemble_params
  result.ensemble_archs = list(final.ensemble_archs)
  result.member_accuracies = list(final.member_accuracies)
  result.ensemble_gain = final.ensemble_gain
  result.iterations = len(records)
  result.steps_per_member = steps
  result.candidate_steps = sum(len(r.candidates) for r in records) * steps
  result.train_mult_adds = sum(r.train_mult_adds for r in records)
  if saved["ended"] and not message:
    result.message = saved["ended"]
  return result


def _number(value, fmt: str) -> str:
  return "-" if value is None else format(value, fmt)


def _giga(value) -> str:
  return "-" if value is None else f"{value / 1e9:,.1f}G"


def format_table(summaries: List[ArmSummary]) -> str:
  """The comparison table: one line per arm."""
  header = ("arm", "accuracy per seed", "mean +- std", "params",
            "steps/member", "cand. steps", "train mult-adds", "wall")
  rows = [header]
  for s in summaries:
    each = " ".join(f"{r.test_accuracy:.4f}" if r.state in (
        "finished", "ended") else r.state for r in s.runs) or "-"
    mean = ("-" if s.accuracy_mean is None else
            f"{s.accuracy_mean:.4f} +- {s.accuracy_std:.4f}")
    rows.append((s.arm, each, mean, _number(
        None if s.params_mean is None else round(s.params_mean), ","),
                 f"{s.steps_per_member:,}" if s.steps_per_member else "-",
                 _number(None if s.candidate_steps_mean is None
                         else round(s.candidate_steps_mean), ","),
                 _giga(s.train_mult_adds_mean),
                 "-" if s.wall_seconds_mean is None
                 else f"{s.wall_seconds_mean:.0f}s"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(row, widths))).rstrip()
           for row in rows]
  lines.insert(1, "-" * len(lines[0]))
  failed = [f"{r.arm} seed {r.seed}: {r.message}" for s in summaries
            for r in s.runs if r.state == "failed"]
  if failed:
    lines.append("failed: " + "; ".join(failed))
  return "\n".join(lines)


_CSV_FIELDS = ("arm", "seeds", "accuracies", "accuracy_mean", "accuracy_std",
               "params_mean", "steps_per_member", "candidate_steps_mean",
               "train_mult_adds_mean", "wall_seconds_mean", "failed")


def _csv_text(summaries: List[ArmSummary]) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=_CSV_FIELDS)
  writer.writeheader()
  for s in summaries:
    writer.writerow({
        "arm": s.arm,
        "seeds": " ".join(str(r.seed) for r in s.runs),
        "accuracies": " ".join("" if r.test_accuracy is None else
                               f"{r.test_accuracy:.6f}" for r in s.runs),
        "accuracy_mean": _number(s.accuracy_mean, ".6f"),
        "accuracy_std": _number(s.accuracy_std, ".6f"),
        "params_mean": _number(s.params_mean, ".1f"),
        "steps_per_member": s.steps_per_member,
        "candidate_steps_mean": _number(s.candidate_steps_mean, ".1f"),
        "train_mult_adds_mean": _number(s.train_mult_adds_mean, ".0f"),
        "wall_seconds_mean": _number(s.wall_seconds_mean, ".1f"),
        "failed": sum(r.state == "failed" for r in s.runs)})
  return out.getvalue()


def _plot(summaries: List[ArmSummary], x_field: str, x_label: str,
          path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
  for s in summaries:
    x = getattr(s, x_field)
    if x is None or s.accuracy_mean is None:
      continue
    ax.errorbar([x], [s.accuracy_mean], yerr=[s.accuracy_std or 0.0],
                fmt="o", capsize=4)
    ax.annotate(s.arm, (x, s.accuracy_mean), textcoords="offset points",
                xytext=(6, 4), fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel(x_label)
  ax.set_ylabel("final test accuracy (mean +- std over seeds)")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _hparam_value(value):
  if isinstance(value, (bool, int, float, str)):
    return value
  return None if value is None else json.dumps(value)


def write_hparams(out_dir: str, summaries: List[ArmSummary]) -> str:
  """TensorBoard's HParams dashboard: one run per search, with the fields
  that differ between its runs (and arm, seed) as hparams and the final
  metrics as scalars "final/NAME". Rewritten whole each time."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  root = os.path.join(out_dir, HPARAMS_DIR)
  if os.path.isdir(root):
    shutil.rmtree(root)
  runs = [r for s in summaries for r in s.runs
          if r.state in ("finished", "ended")]
  fields = sorted({k for r in runs for k in r.config})
  varying = [k for k in fields if k != "seed" and len(
      {json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]
  names = ["arm", "seed"] + varying
  with tf.summary.create_file_writer(root).as_default():
    hp.hparams_config(hparams=[hp.HParam(n) for n in names],
                      metrics=[hp.Metric(f"final/{m}") for m in _METRICS])
  for r in runs:
    values = {"arm": r.arm, "seed": r.seed}
    for k in varying:
      value = _hparam_value(r.config.get(k))
      if value is not None:
        values[k] = value
    with tf.summary.create_file_writer(
        os.path.join(root, r.arm, f"seed_{r.seed}")).as_default():
      hp.hparams(values, trial_id=f"{r.arm}/seed_{r.seed}")
      for m in _METRICS:
        value = getattr(r, m)
        if value is not None:
          tf.summary.scalar(f"final/{m}", float(value), step=0)
  return root


def write_outputs(out_dir: str, study: Study,
                  summaries: List[ArmSummary]) -> List[str]:
  """compare.json, compare.csv, the two plots and the HParams runs."""
  paths = {name: os.path.join(out_dir, name) for name in (
      "compare.json", "compare.csv", "accuracy_vs_params.png",
      "accuracy_vs_compute.png")}
  payload = {"study": study.to_dict(),
             "arms": [dataclasses.asdict(s) for s in summaries]}
  write_text_atomic(paths["compare.json"], json.dumps(payload, indent=1))
  write_text_atomic(paths["compare.csv"], _csv_text(summaries))
  _plot(summaries, "params_mean", "ensemble parameters",
        paths["accuracy_vs_params.png"])
  _plot(summaries, "train_mult_adds_mean",
        "training multiply-adds (frozen members' forward passes included)",
        paths["accuracy_vs_compute.png"])
  return list(paths.values()) + [write_hparams(out_dir, summaries)]


def write_text_atomic(path: str, text: str) -> None:
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
