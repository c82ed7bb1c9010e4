"""Runs a study (see study.py): every arm over every seed as a separate
search, then compares them.

Layout of a study directory:

  study.json             the study as given (arms, seeds, settings)
  runs/ARM/seed_S/       the model_dir of one search (resumable)
  runs/ARM/seed_S.log    its console output
  runs/ARM/seed_S.json   its command, attempts, wall time and outcome
  runs/ARM/tower.json    a tower arm's size, once its ensemble arm finished
  compare.json, compare.csv, accuracy_vs_params.png, accuracy_vs_compute.png
  hparams/               TensorBoard's HParams dashboard: one run per search

Running it again continues: finished searches are kept, an interrupted one
resumes from its checkpoint, a failed one is tried again.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

from improve_nas import records as records_lib
from improve_nas import study as study_lib
from improve_nas.errors import ConfigError
from improve_nas.lock import LOCK_FILE, ModelDirLock
from improve_nas.study import Arm, Study
# The results of a study, under the names callers use.
from improve_nas.study_results import (ArmSummary, RunResult, format_table,
                                       read_result, summarize,
                                       write_outputs, write_text_atomic)

__all__ = ["RunResult", "ArmSummary", "StudyRunner", "summarize",
           "format_table", "write_outputs", "load_study", "STUDY_FILE"]

STUDY_FILE = "study.json"
RUNS_DIR = "runs"
def _read_json(path: str) -> Optional[dict]:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_study(out_dir: str) -> Optional[Study]:
  """The study a study directory was started with, or None."""
  saved = _read_json(os.path.join(out_dir, STUDY_FILE))
  return None if saved is None else Study.from_dict(saved)


def _die_with_parent() -> None:
  """In the child before exec: SIGKILL it when the study's process dies, so
  a killed study leaves no search running on its model_dirs."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
  except OSError:  # not Linux: children may outlive a killed study
    pass


def _flag(field: str, value) -> str:
  return f"--config.{field}={value}"


class StudyRunner:
  """Runs the searches of `study` under `out_dir`, `parallel` at a time.

  `on_line` gets each progress line; `command` is how a search is started
  (default: this interpreter with `-m trainer.main`), followed by its
  flags.
  """

  def __init__(self, study: Study, out_dir: str, parallel: int = 1,
               on_line: Callable[[str], None] = print,
               command: Optional[List[str]] = None):
    if parallel < 1:
      raise ConfigError(f"--parallel={parallel}: must be >= 1")
    self.study = study
    self.out_dir = out_dir
    self.parallel = parallel
    self._say = on_line
    self._command = command or [sys.executable, "-m", "trainer.main"]
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._procs: Dict[str, subprocess.Popen] = {}
    self._done_walls: List[float] = []
    self._total = len(study.arms) * len(study.seeds)
    self._finished = 0
    self._prepared = False
    self._dir_lock = ModelDirLock(out_dir, role="study", flag="--out")

  # Paths.
  def model_dir(self, arm: str, seed: int) -> str:
    return os.path.join(self.out_dir, RUNS_DIR, arm, f"seed_{seed}")

  def _state_path(self, arm: str, seed: int) -> str:
    return self.model_dir(arm, seed) + ".json"

  def prepare(self) -> None:
    """Creates the study directory, or checks that it holds this study.

    Raises:
      ConfigError: it holds another study, or a bad arm.
    """
    for arm in self.study.arms:  # every arm's config must load
      if arm.tower_of is None:
        study_lib.load_config(arm.config, {**self.study.settings,
                                           **arm.overrides})
    saved_path = os.path.join(self.out_dir, STUDY_FILE)
    if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
      raise ConfigError(f"--out={self.out_dir!r} is a file; give a directory "
                        "for the study")
    try:
      saved = _read_json(saved_path)
    except (ValueError, OSError) as e:
      raise ConfigError(f"{saved_path} cannot be read ({e}); give another "
                        "--out or delete it") from None
    if saved is None:
      if os.path.isdir(self.out_dir) and set(os.listdir(self.out_dir)) - {
          LOCK_FILE}:
        raise ConfigError(f"--out={self.out_dir!r} is not empty and holds no "
                          f"study ({STUDY_FILE}); give an empty or new "
                          "directory")
    elif saved != json.loads(json.dumps(self.study.to_dict())):
      diff = [k for k in ("study", "arms", "seeds", "settings")
              if saved.get(k) != json.loads(json.dumps(
                  self.study.to_dict()[k]))]
      raise ConfigError(
          f"--out={self.out_dir!r} holds study {saved.get('study')!r} with "
          f"other {', '.join(diff)}; run it with the same flags to continue, "
          "or give another --out")
    # One runner per study directory, until run() returns.
    took_over = self._dir_lock.acquire()
    if took_over:
      self._say(f"improve-nas-compare: {took_over}")
    if saved is None:
      write_text_atomic(saved_path, json.dumps(self.study.to_dict(), indent=1))
    self._prepared = True

  def _flags(self, arm: Arm, seed: int) -> List[str]:
    overrides = {**self.study.settings, **arm.overrides}
    config = arm.config
    if arm.tower_of is not None:  # its overrides apply to its base's config
      overrides = self._tower_overrides(arm)
      config = next(a.config for a in self.study.arms
                    if a.name == arm.tower_of)
    out = [f"--config={config}"]
    out += [_flag(k, v) for k, v in overrides.items() if k != "seed"]
    out += [_flag("seed", seed), f"--model_dir={self.model_dir(arm.name, seed)}",
            "--noexport", "--progress_secs=30"]
    return out

  def _tower_overrides(self, arm: Arm) -> Dict[str, object]:
    """A tower arm's overrides: sized once after its ensemble arm finished
    (runs/ARM/tower.json keeps the choice)."""
    path = os.path.join(self.out_dir, RUNS_DIR, arm.name, "tower.json")
    saved = _read_json(path)
    if saved is not None:
      return saved["overrides"]
    base = next(a for a in self.study.arms if a.name == arm.tower_of)
    finished = []
    for seed in self.study.seeds:
      state = _read_json(self._state_path(base.name, seed)) or {}
      if state.get("outcome") in ("finished", "ended"):
        finished.append(read_result(base.name, seed,
                                    self.model_dir(base.name, seed), 0.0))
    finished = [r for r in finished if r.state in ("finished", "ended")]
    if not finished:
      raise ConfigError(f"arm {arm.name!r}: every run of {base.name!r} failed,"
                        " so there is no ensemble to size the tower after")
    target = min(r.ensemble_params for r in finished)
    # (TensorFlow is loaded only when a tower has to be sized)
    from improve_nas.dataset_facts import DatasetFacts  # pylint: disable=g-import-not-at-top
    from improve_nas.nasnet.counting import inference_params  # pylint: disable=g-import-not-at-top
    import ml_collections  # pylint: disable=g-import-not-at-top
    resolved = finished[0].config
    shape = DatasetFacts.load(ml_collections.ConfigDict(resolved)).tower_shape
    count = lambda a: inference_params(a, *shape)
    self._say(f"{arm.name}: sizing one tower after {base.name}'s final "
              f"ensemble ({target:,} parameters)")
    overrides = study_lib.tower_arm_overrides(arm, base, resolved, target,
                                              count)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text_atomic(path, json.dumps(
        {"target_params": target, "overrides": overrides}, indent=1))
    self._say(f"{arm.name}: one {overrides['initial_arch']} tower "
              f"({count(overrides['initial_arch']):,} parameters, "
              f"{base.name}'s smallest final ensemble has {target:,}), "
              f"{overrides['steps_per_iteration']:,} steps")
    return overrides

  def _eta(self, remaining: int) -> str:
    if not self._done_walls:
      return ""
    mean = sum(self._done_walls) / len(self._done_walls)
    return f"; ETA {remaining * mean / self.parallel / 60:.0f} min"

  def _run_one(self, arm: Arm, seed: int) -> RunResult:
    """Runs (or resumes) one search unless it already finished."""
    model_dir = self.model_dir(arm.name, seed)
    state_path = self._state_path(arm.name, seed)
    state = _read_json(state_path) or {"wall_seconds": 0.0, "attempts": 0}
    if state.get("outcome") in ("finished", "ended"):
      with self._lock:
        self._finished += 1
        self._done_walls.append(state["wall_seconds"])
      return read_result(arm.name, seed, model_dir, state["wall_seconds"],
                         state["outcome"], state.get("message", ""))
    if self._stop.is_set():
      return RunResult(arm.name, seed, "pending", message="not run")
    command = self._command + self._flags(arm, seed)
    resuming = os.path.isdir(model_dir)  # a search was started there
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    with self._lock:
      self._say(f"{arm.name} seed {seed}: "
                f"{'resuming' if resuming else 'starting'} "
                f"({self._finished} of {self._total} done"
                f"{self._eta(self._total - self._finished)})")
    start = time.time()
    with open(model_dir + ".log", "a") as log:
      # Its own session: a terminal's Ctrl-C reaches the study alone, which
      # asks each search once to stop (a second signal would cut a search
      # short of its checkpoint).
      proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True,
                              preexec_fn=_die_with_parent)
      key = f"{arm.name}/{seed}"
      with self._lock:
        self._procs[key] = proc
      returncode = proc.wait()
      with self._lock:
        del self._procs[key]
    wall = time.time() - start
    message = _last_line(model_dir + ".log")
    if self._stop.is_set() and returncode != 0:
      outcome = "stopped"
    elif returncode == 0:
      outcome = "finished"
    elif returncode == 1 and (records_lib.load_search(model_dir) or {}).get(
        "ended"):
      outcome = "ended"   # every candidate diverged: a result, not a crash
    else:
      outcome = "failed"
    state.update(command=command, attempts=state["attempts"] + 1,
                 wall_seconds=round(state["wall_seconds"] + wall, 1),
                 outcome=outcome, returncode=returncode, message=message)
    write_text_atomic(state_path, json.dumps(state, indent=1))
    if returncode == 2:
      raise ConfigError(f"arm {arm.name!r} seed {seed}: {message}")
    result = read_result(arm.name, seed, model_dir, state["wall_seconds"],
                         outcome, message if outcome != "finished" else "")
    if outcome == "stopped":
      result.state = "pending"
    with self._lock:
      self._finished += 1
      if outcome in ("finished", "ended"):
        self._done_walls.append(wall)
      acc = ("-" if result.test_accuracy is None
             else f"{result.test_accuracy:.4f}")
      self._say(f"[{self._finished}/{self._total}] {arm.name} seed {seed}: "
                f"{outcome}, test accuracy {acc}, "
                f"{result.ensemble_params or 0:,} parameters, {wall:.0f}s"
                f"{self._eta(self._total - self._finished)}")
    return result

  def stop(self) -> None:
    """Stops the running searches (each checkpoints and exits) and starts
    no more."""
    self._stop.set()
    with self._lock:
      for proc in self._procs.values():
        if proc.poll() is None:
          proc.send_signal(signal.SIGTERM)

  def run(self) -> List[RunResult]:
    """Every run of the study: the arms that towers are sized after, then
    those towers (the comparison users ask first), then the other arms."""
    if not self._prepared:
      self.prepare()
    results: List[RunResult] = []
    bases = {a.tower_of for a in self.study.arms}
    phases = [[a for a in self.study.arms if a.name in bases],
              [a for a in self.study.arms if a.tower_of is not None],
              [a for a in self.study.arms
               if a.tower_of is None and a.name not in bases]]
    with concurrent.futures.ThreadPoolExecutor(self.parallel) as pool, \
        self._dir_lock:
      for arms in phases:
        for arm in arms:  # towers are sized once, here, before they run
          if arm.tower_of is not None:
            self._tower_overrides(arm)
        futures = [pool.submit(self._run_one, arm, seed) for arm in arms
                   for seed in self.study.seeds]
        try:
          results += [f.result() for f in futures]
        except BaseException:
          self.stop()
          raise
        if self._stop.is_set():
          break
    return results

  @property
  def stopped(self) -> bool:
    return self._stop.is_set()


def _last_line(path: str) -> str:
  """The last non-empty line of a log (how a search said it ended)."""
  try:
    with open(path, "rb") as f:
      f.seek(max(0, os.path.getsize(path) - 4096))
      lines = [l.strip() for l in f.read().decode(errors="replace")
               .splitlines() if l.strip()]
  except OSError:
    return ""
  return lines[-1] if lines else ""
