"""What a search keeps in its model_dir besides checkpoints, and whether a
model_dir can take a search.

`search.json` holds one `IterationRecord` per finished iteration (and why
the search ended, if it ended early); `config.json` the config the search
was started with. `check_model_dir_usable` and `check_model_dir` refuse a
model_dir that cannot be written or that holds another search.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from typing import Dict, List, Optional

import ml_collections
import tensorflow as tf

from improve_nas.config import upgrade_saved
from improve_nas.errors import ConfigError
from improve_nas.lock import LOCK_FILE

__all__ = ["CandidateRecord", "IterationRecord", "RECORDS_FILE",
           "CONFIG_FILE", "ENGINE_FILE", "ENGINES", "saved_engine",
           "write_engine", "DamagedFile", "load_search", "load_records", "load_saved_config",
           "write_records", "check_model_dir", "check_model_dir_usable"]

RECORDS_FILE = "search.json"
CONFIG_FILE = "config.json"
# Which engine's search a model_dir holds: {"engine": "keras"}. A search
# with a config.json and no such file is the adanet engine's (it predates
# the file, and the adanet engine writes none).
ENGINE_FILE = "engine.json"
ENGINES = ("adanet", "keras")


@dataclasses.dataclass
class CandidateRecord:
  name: str
  arch: str
  reason: str
  params: int
  selection_loss: Optional[float]  # None: not evaluated (the only
                                   # candidate) or diverged
  diverged: bool = False           # its loss became NaN or infinite
  test_accuracy: Optional[float] = None  # its own logits on the eval split
  mult_adds: int = 0               # per example, inference tower


@dataclasses.dataclass
class IterationRecord:
  iteration: int
  candidates: List[CandidateRecord]
  chosen: str                     # name of the chosen candidate
  ensemble_archs: List[str]       # the members after this iteration
  ensemble_params: int
  test_accuracy: float
  test_loss: float
  global_step: int
  seconds: float                  # wall time: training, selection, evaluation
  mixture_weights: List[float] = dataclasses.field(default_factory=list)
  eval_metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
  train_seconds: float = 0.0      # estimator.train, bookkeeping included
  steps_per_second: float = 0.0   # this iteration's steps / train_seconds
  # Each member's own test accuracy (its raw logits), in member order, and
  # the ensemble's accuracy minus the best of them.
  member_accuracies: List[Optional[float]] = dataclasses.field(
      default_factory=list)
  ensemble_gain: Optional[float] = None
  # This iteration's training compute: multiply-adds per training example
  # (3 x the forward pass of every candidate trained, auxiliary head
  # included, plus 1 x the forward pass of every frozen member) times the
  # examples trained (steps x batch size).
  train_mult_adds: int = 0

  @classmethod
  def from_dict(cls, d: dict) -> "IterationRecord":
    d = dict(d)
    d["candidates"] = [CandidateRecord(**x) for x in d["candidates"]]
    return cls(**d)


class DamagedFile(ConfigError):
  """A search.json or config.json that cannot be read or does not parse."""

  def __init__(self, path: str, reason: str, unreadable: bool = False):
    self.path, self.reason, self.unreadable = path, reason, unreadable
    fix = ("make it readable and run again" if unreadable else
           "run improve-nas on this --model_dir to rebuild it from the "
           "TensorBoard run 'search', or restore the file from a copy")
    super().__init__(f"{path} is damaged ({reason}); {fix}" if not unreadable
                     else f"{path} {reason}; {fix}")


def _read_json(model_dir: str, name: str) -> Optional[dict]:
  """The JSON object in MODEL_DIR/name; None when there is no such file.

  Raises:
    DamagedFile: it cannot be read, or is not a JSON object.
  """
  path = os.path.join(model_dir, name)
  try:
    if not tf.io.gfile.exists(path):
      return None
    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read()
  except (OSError, tf.errors.OpError) as e:
    if isinstance(e, (PermissionError, tf.errors.PermissionDeniedError)):
      reason = os.strerror(errno.EACCES)
    else:
      reason = getattr(e, "strerror", None) or getattr(e, "message", str(e))
    raise DamagedFile(path, f"cannot be read ({reason})",
                      unreadable=True) from None
  try:
    value = json.loads(data.decode("utf-8"))
  except UnicodeDecodeError:
    raise DamagedFile(path, "not UTF-8 text") from None
  except ValueError as e:
    why = "empty" if not data.strip() else f"not valid JSON: {e}"
    raise DamagedFile(path, why) from None
  if not isinstance(value, dict):
    raise DamagedFile(path, f"holds a JSON {type(value).__name__}, not an "
                      "object")
  return value


def parse_search(saved: dict) -> dict:
  """{"records": [...], "ended": ...} from search.json's JSON object.

  Raises:
    ValueError: it is not a search record.
  """
  try:
    return {"records": [IterationRecord.from_dict(d)
                        for d in saved["iterations"]],
            "ended": saved.get("ended")}
  except (KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"not a search record: {type(e).__name__} {e}") from None


def load_search(model_dir: str) -> Optional[dict]:
  """{"records": [IterationRecord], "ended": str or None} of the search in
  `model_dir`, or None when it holds no search.json.

  Raises:
    DamagedFile: search.json cannot be read or is not a search record.
  """
  saved = _read_json(model_dir, RECORDS_FILE)
  if saved is None:
    return None
  try:
    return parse_search(saved)
  except ValueError as e:
    raise DamagedFile(os.path.join(model_dir, RECORDS_FILE), str(e)) from None


def load_records(model_dir: str) -> List[IterationRecord]:
  """The iteration records of the search in `model_dir` (may be empty)."""
  saved = load_search(model_dir)
  return saved["records"] if saved else []


def load_saved_config(model_dir: str) -> Optional[dict]:
  """The config a search in `model_dir` was started with (config.json), as
  a dict, or None.

  Raises:
    DamagedFile: config.json cannot be read or does not parse.
  """
  return _read_json(model_dir, CONFIG_FILE)


def write_records(model_dir: str, records: List[IterationRecord],
                   ended: Optional[str]) -> None:
  path = os.path.join(model_dir, RECORDS_FILE)
  payload = {"iterations": [dataclasses.asdict(r) for r in records],
             "ended": ended}
  with tf.io.gfile.GFile(path + ".tmp", "w") as f:
    json.dump(payload, f, indent=1)
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


# Fields that may change between runs on one model_dir without changing what
# the checkpoints mean.
_RESUMABLE_FIELDS = {"max_iterations", "eval_steps", "selection_steps",
                     "save_checkpoints_steps", "save_summary_steps",
                     "data_dir", "param_budget", "placement"}


def check_model_dir_usable(model_dir: str) -> None:
  """Raises ConfigError if `model_dir` is a file or (locally) not writable."""
  if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
    raise ConfigError(f"--model_dir={model_dir!r} is a file, not a directory; "
                      "choose a directory for the run")
  if "://" in model_dir:  # gs://, hdfs://: left to the filesystem
    return
  existing = os.path.abspath(model_dir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConfigError(f"--model_dir={model_dir!r}: {existing!r} is a file, so "
                      "the directory cannot be created; choose another path")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f"--model_dir={model_dir!r}: {existing!r} is not "
                      "writable; choose a directory you can write to")


_UNREAD = object()


def saved_engine(model_dir: str) -> Optional[str]:
  """The engine whose search `model_dir` holds; None when it holds none.

  Raises:
    DamagedFile: engine.json cannot be read or does not parse.
  """
  marker = _read_json(model_dir, ENGINE_FILE)
  if marker is not None:
    return str(marker.get("engine"))
  if tf.io.gfile.exists(os.path.join(model_dir, CONFIG_FILE)):
    return "adanet"
  return None


def write_engine(model_dir: str, engine: str) -> None:
  """Marks `model_dir` as holding a search of `engine` (not "adanet")."""
  path = os.path.join(model_dir, ENGINE_FILE)
  with tf.io.gfile.GFile(path + ".tmp", "w") as f:
    json.dump({"engine": engine}, f)
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def check_engine(model_dir: str, engine: str) -> None:
  """Raises ConfigError if `model_dir` holds another engine's search."""
  held = saved_engine(model_dir)
  if held is not None and held != engine:
    raise ConfigError(
        f"model_dir {model_dir!r} holds a search of the {held} engine, not "
        f"the {engine} one; run it with --engine={held}, choose another "
        "--model_dir, or pass --overwrite to start over")


def check_model_dir(c: ml_collections.ConfigDict, model_dir: str,
                    saved=_UNREAD, engine: str = "adanet") -> None:
  """Raises ConfigError if `model_dir` holds a search of another engine or
  with another config (`saved`: that search's config, when already read;
  None for none)."""
  if tf.io.gfile.isdir(model_dir):
    check_engine(model_dir, engine)
  if saved is _UNREAD:
    saved = load_saved_config(model_dir)
  if saved is not None:
    saved = upgrade_saved(saved)
  if saved is None:
    if tf.io.gfile.exists(model_dir) and set(
        tf.io.gfile.listdir(model_dir)) - {LOCK_FILE}:
      raise ConfigError(
          f"model_dir {model_dir!r} is not empty and holds no improve_nas "
          "search; choose another --model_dir or pass --overwrite")
    return
  current = json.loads(c.to_json())
  changed = sorted(k for k in set(saved) | set(current)
                   if k not in _RESUMABLE_FIELDS and
                   saved.get(k) != current.get(k))
  if changed:
    fields = ", ".join(f"config.{k}={saved.get(k)!r} (now {current.get(k)!r})"
                       for k in changed)
    raise ConfigError(
        f"model_dir {model_dir!r} holds a search with another config: "
        f"{fields}; resume with the same config, choose another --model_dir, "
        "or pass --overwrite to start over")
