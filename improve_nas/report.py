"""The search report: per-iteration table, JSON, CSV and plots.

Everything here reads what a search left in its model_dir (search.json,
config.json, the latest checkpoint), so it works on a finished search and on
one still running (search.json is rewritten atomically after each iteration).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Dict, List, Optional

import tensorflow as tf

from improve_nas.errors import ConfigError
from improve_nas.nasnet.arch import ArchSpec
from improve_nas import model_dir as model_dir_lib
from improve_nas.model_dir import latest_global_step
from improve_nas.records import (CONFIG_FILE, DamagedFile, IterationRecord,
                                 load_search)

__all__ = ["format_table", "table_rows", "search_status", "write_report",
           "REPORT_DIR"]

REPORT_DIR = "report"

_HEADER = ("iter", "candidate", "arch", "params", "sel. loss", "own acc",
           "chosen", "weight", "ens. params", "test acc", "gain", "time",
           "steps/s")
_LEFT = {1, 2, 6}


def _weight(r: IterationRecord) -> Optional[float]:
  """The mixture weight of the member added at iteration r."""
  return r.mixture_weights[-1] if r.mixture_weights else None


def table_rows(records: List[IterationRecord]) -> List[Dict[str, object]]:
  """One row per candidate, as plain values (the CSV and the table)."""
  rows = []
  for r in records:
    for x in r.candidates:
      chosen = x.name == r.chosen
      rows.append({
          "iteration": r.iteration, "candidate": x.name, "arch": x.arch,
          "reason": x.reason, "params": x.params,
          "selection_loss": x.selection_loss, "diverged": x.diverged,
          "own_test_accuracy": x.test_accuracy,
          "chosen": chosen,
          "mixture_weight": _weight(r) if chosen else None,
          "ensemble_params": r.ensemble_params if chosen else None,
          "test_accuracy": r.test_accuracy if chosen else None,
          "ensemble_gain": r.ensemble_gain if chosen else None,
          "test_loss": r.test_loss if chosen else None,
          "seconds": r.seconds if chosen else None,
          "steps_per_second": r.steps_per_second if chosen else None,
      })
  return rows


def _cells(row: Dict[str, object]) -> tuple:
  def number(value, fmt):
    return "" if value is None else format(value, fmt)
  return (str(row["iteration"]), row["candidate"], row["arch"],
          f"{row['params']:,}",
          "diverged" if row["diverged"] else
          "-" if row["selection_loss"] is None
          else f"{row['selection_loss']:.4f}",
          number(row["own_test_accuracy"], ".4f"),
          "*" if row["chosen"] else "",
          number(row["mixture_weight"], ".4f"),
          number(row["ensemble_params"], ","),
          number(row["test_accuracy"], ".4f"),
          number(row["ensemble_gain"], "+.4f"),
          "" if row["seconds"] is None else f"{row['seconds']:.0f}s",
          number(row["steps_per_second"], ".2f"))


def format_table(records: List[IterationRecord],
                 ended: Optional[str] = None) -> str:
  """One line per candidate; the chosen one also shows the ensemble."""
  rows = [_HEADER] + [_cells(row) for row in table_rows(records)]
  widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
  lines = ["  ".join(cell.ljust(w) if i in _LEFT else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
           for row in rows]
  lines.insert(1, "-" * len(lines[0]))
  if records:
    last = records[-1]
    lines.append(
        f"final ensemble: {' + '.join(last.ensemble_archs)} "
        f"({last.ensemble_params:,} parameters), test accuracy "
        f"{last.test_accuracy:.4f}")
    if any(a is not None for a in last.member_accuracies):
      own = ", ".join("-" if a is None else f"{a:.4f}"
                      for a in last.member_accuracies)
      gain = ("" if last.ensemble_gain is None else
              f"; the ensemble's gain over its best member "
              f"{last.ensemble_gain:+.4f}")
      lines.append(f"members' own test accuracy: {own}{gain}")
  if ended:
    lines.append(ended)
  return "\n".join(lines)


def search_status(model_dir: str) -> dict:
  """Where the search in `model_dir` stands.

  Returns {"state": "finished" | "ended" | "running", "detail": one line,
  "records": [IterationRecord], "config": dict, "latest_step": int,
  "note": a line when damaged files were read from their TensorBoard
  copies, else None}.
  "running" also covers a search that was stopped and can be resumed.

  Raises:
    ConfigError: model_dir is missing or holds no improve_nas search.
  """
  if not tf.io.gfile.isdir(model_dir):
    raise ConfigError(f"--model_dir={model_dir!r} is not a directory; give "
                      "the model_dir of a search")
  config, note = model_dir_lib.saved_config(model_dir)
  try:
    saved = load_search(model_dir)
  except DamagedFile as e:
    rebuilt = None if e.unreadable else model_dir_lib.recovered_records(
        os.path.join(model_dir, model_dir_lib.SUMMARY_DIR))
    if rebuilt is None:
      raise
    saved = {"records": rebuilt, "ended": None}
    note = "; ".join(filter(None, [note, (
        f"{e.path} is damaged ({e.reason}); these are the records saved in "
        f"the TensorBoard run '{model_dir_lib.SUMMARY_DIR}' (improve-nas on "
        "this --model_dir rebuilds the file)")]))
  if config is None:
    raise ConfigError(f"--model_dir={model_dir!r} holds no improve_nas search "
                      f"({CONFIG_FILE} missing); give the model_dir of a "
                      "search")
  # (no search.json yet: the first iteration has not finished)
  saved = saved or {"records": [], "ended": None}
  records = saved["records"]
  latest = latest_global_step(model_dir)
  steps, iterations = config["steps_per_iteration"], config["max_iterations"]
  if saved["ended"]:
    state, detail = "ended", saved["ended"]
  elif len(records) >= iterations:
    state, detail = "finished", f"finished: {len(records)} iterations"
  else:
    current = len(records)
    done = max(0, min(latest - current * steps, steps))
    state = "running"
    detail = (f"running (or stopped): iteration {current + 1} of {iterations} "
              f"at step {done} of {steps}")
  return {"state": state, "detail": detail, "records": records,
          "config": config, "latest_step": latest, "note": note}


def _csv_text(rows: List[Dict[str, object]]) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=_CSV_FIELDS)
  writer.writeheader()
  for row in rows:
    writer.writerow({k: "" if v is None else v for k, v in row.items()})
  return out.getvalue()


_CSV_FIELDS = ("iteration", "candidate", "arch", "reason", "params",
               "selection_loss", "diverged", "own_test_accuracy", "chosen",
               "mixture_weight", "ensemble_params", "test_accuracy",
               "ensemble_gain", "test_loss", "seconds", "steps_per_second")


def _plot_architectures(records: List[IterationRecord], path: str) -> None:
  """Depth (cells per stack) against width (penultimate filters) of every
  candidate, the chosen ones joined in iteration order (cf. the paper's
  Figure 3)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
  others = [ArchSpec.parse(x.arch) for r in records for x in r.candidates
            if x.name != r.chosen]
  if others:
    ax.scatter([a.penultimate_filters for a in others],
               [a.cells_per_stack for a in others], marker="x", color="0.6",
               label="not chosen")
  chosen = [ArchSpec.parse(next(x.arch for x in r.candidates
                                if x.name == r.chosen)) for r in records]
  xs = [a.penultimate_filters for a in chosen]
  ys = [a.cells_per_stack for a in chosen]
  ax.plot(xs, ys, "-o", color="tab:blue", label="chosen")
  for r, x, y in zip(records, xs, ys):
    ax.annotate(str(r.iteration), (x, y), textcoords="offset points",
                xytext=(5, 5))
  ax.set_xlabel("penultimate filters P")
  ax.set_ylabel("cells per stack N")
  ax.set_title("Architectures chosen per iteration (N@P)")
  ax.yaxis.get_major_locator().set_params(integer=True)
  ax.grid(alpha=0.3)
  ax.legend(loc="best")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _plot_progress(records: List[IterationRecord], path: str) -> None:
  """Ensemble test accuracy and parameters after each iteration."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
  its = [r.iteration for r in records]
  ax.plot(its, [r.test_accuracy for r in records], "-o", color="tab:blue")
  ax.set_xlabel("iteration")
  ax.set_ylabel("ensemble test accuracy", color="tab:blue")
  ax.xaxis.get_major_locator().set_params(integer=True)
  right = ax.twinx()
  right.plot(its, [r.ensemble_params for r in records], "-s",
             color="tab:orange")
  right.set_ylabel("ensemble parameters", color="tab:orange")
  ax.set_title("Ensemble accuracy and size per iteration")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_report(model_dir: str, out_dir: Optional[str] = None) -> dict:
  """Writes report.json, report.csv, architectures.png and progress.png to
  `out_dir` (default MODEL_DIR/report). Returns the report dict, with
  "table" (the printed table) and "files" (the paths written).

  Raises:
    ConfigError: model_dir holds no search.
  """
  status = search_status(model_dir)
  records = status["records"]
  out_dir = out_dir or os.path.join(model_dir, REPORT_DIR)
  tf.io.gfile.makedirs(out_dir)
  rows = table_rows(records)
  paths = {name: os.path.join(out_dir, name) for name in
           ("report.json", "report.csv", "architectures.png", "progress.png")}
  final = records[-1] if records else None
  report = {
      "model_dir": model_dir,
      "state": status["state"],
      "detail": status["detail"],
      "latest_step": status["latest_step"],
      "config": status["config"],
      "final": None if final is None else {
          "ensemble_archs": final.ensemble_archs,
          "ensemble_params": final.ensemble_params,
          "mixture_weights": final.mixture_weights,
          "test_accuracy": final.test_accuracy,
          "member_accuracies": final.member_accuracies,
          "ensemble_gain": final.ensemble_gain,
          "test_loss": final.test_loss},
      "iterations": [dataclasses.asdict(r) for r in records],
      "rows": rows,
      "note": status["note"],
  }
  with tf.io.gfile.GFile(paths["report.json"], "w") as f:
    json.dump(report, f, indent=1)
  with tf.io.gfile.GFile(paths["report.csv"], "w") as f:
    f.write(_csv_text(rows))
  written = [paths["report.json"], paths["report.csv"]]
  if records:
    _plot_architectures(records, paths["architectures.png"])
    _plot_progress(records, paths["progress.png"])
    written += [paths["architectures.png"], paths["progress.png"]]
  report["table"] = format_table(records, status["detail"]
                                 if status["state"] != "finished" else None)
  report["files"] = written
  return report
