"""One writer per model_dir: a lock held while a process writes a search.

The lock is `MODEL_DIR/improve_nas.lock`, an advisory `flock` on that file
plus a line of JSON inside it saying who holds it (host, pid, since when,
what for). The kernel drops a `flock` when its process dies, however it
dies, so a lock left behind by a killed search is never mistaken for a live
one: the next search finds the old holder's line in an unlocked file, says
so, and takes the lock over.

The file itself is never removed (removing it would let two processes lock
two different files of the same name); releasing empties it. Remote model
dirs (gs://, hdfs://) are not locked: their filesystems have no `flock`.

The chief of a TF_CONFIG cluster holds the lock for the whole cluster, and
records the cluster's fingerprint in it; workers and the evaluator of that
cluster only check that whoever holds it is their own chief.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
from typing import Dict, List, Optional

from improve_nas.errors import ConfigError

__all__ = ["LOCK_FILE", "ModelDirBusy", "ModelDirLock", "cluster_fingerprint",
           "check_cluster_member", "read_holder"]

LOCK_FILE = "improve_nas.lock"


class ModelDirBusy(ConfigError):
  """Another live process holds the model_dir's lock."""


def cluster_fingerprint(cluster: Optional[Dict[str, List[str]]]) -> str:
  """A short id of a TF_CONFIG cluster spec ("" without a cluster)."""
  if not cluster:
    return ""
  text = json.dumps(cluster, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _local(model_dir: str) -> bool:
  return "://" not in model_dir


def read_holder(model_dir: str) -> Optional[dict]:
  """What the lock file says about its last holder (None when empty, absent
  or unreadable). The holder may be dead: only `flock` says who is alive."""
  try:
    with open(os.path.join(model_dir, LOCK_FILE)) as f:
      text = f.read().strip()
  except OSError:
    return None
  if not text:
    return None
  try:
    holder = json.loads(text)
  except ValueError:
    return {"damaged": text[:80]}
  return holder if isinstance(holder, dict) else {"damaged": text[:80]}


def describe(holder: Optional[dict]) -> str:
  """`holder` in words: "pid 123 on host-a (a search since 2026-...)"."""
  if not holder:
    return "a process that has not written its details yet"
  if "damaged" in holder:
    return f"an unknown process (the lock file reads {holder['damaged']!r})"
  what = holder.get("role", "search")
  return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
          f"({what} since {holder.get('since', '?')})")


class ModelDirLock:
  """The lock of one model_dir; `acquire` it before writing anything there.

      lock = ModelDirLock(model_dir)
      note = lock.acquire()   # ModelDirBusy if a live process holds it
      try: ... finally: lock.release()
  """

  def __init__(self, model_dir: str, role: str = "search",
               cluster: Optional[Dict[str, List[str]]] = None,
               flag: str = "--model_dir"):
    self.model_dir = model_dir
    self.role = role
    self.flag = flag  # how the user named the directory, for messages
    self.cluster = cluster_fingerprint(cluster)
    self._fd: Optional[int] = None

  @property
  def path(self) -> str:
    return os.path.join(self.model_dir, LOCK_FILE)

  @property
  def held(self) -> bool:
    return self._fd is not None

  def acquire(self) -> Optional[str]:
    """Takes the lock, creating model_dir if needed.

    Returns a line to show when the lock was taken over from a process that
    died holding it, else None.

    Raises:
      ModelDirBusy: a live process holds the lock (the message names it).
      ConfigError: the lock file cannot be created.
    """
    if not _local(self.model_dir) or self._fd is not None:
      return None
    os.makedirs(self.model_dir, exist_ok=True)
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise ConfigError(f"cannot create the lock file {self.path!r} "
                        f"({e.strerror}); choose a --model_dir you can write "
                        "to") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise ConfigError(f"cannot lock {self.path!r} ({e.strerror}); the "
                          "filesystem of --model_dir must support flock")
      raise ModelDirBusy(busy_message(self.model_dir, read_holder(
          self.model_dir), self.flag)) from None
    previous = read_holder(self.model_dir)
    self._fd = fd
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "since": datetime.datetime.now().astimezone().isoformat(
              timespec="seconds"),
          "role": self.role, "command": " ".join(sys.argv)[:300]}
    if self.cluster:
      me["cluster"] = self.cluster
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    os.fsync(fd)
    if previous is None:
      return None
    return (f"took over the lock of {self.model_dir}: its holder, "
            f"{describe(previous)}, is no longer running")

  def release(self) -> None:
    """Empties the lock file and lets go of it (safe to call twice)."""
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      os.ftruncate(fd, 0)
    finally:
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)

  def __enter__(self) -> "ModelDirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def busy_message(model_dir: str, holder: Optional[dict],
                 flag: str = "--model_dir") -> str:
  return (f"{flag}={model_dir!r} is in use by {describe(holder)}; wait "
          "for it to finish or stop it (Ctrl-C keeps its checkpoint), or "
          f"choose another {flag}")


def check_cluster_member(model_dir: str,
                         cluster: Optional[Dict[str, List[str]]]) -> None:
  """For a worker or evaluator: raises ModelDirBusy when a live process
  other than this cluster's chief holds model_dir's lock."""
  path = os.path.join(model_dir, LOCK_FILE)
  if not _local(model_dir) or not os.path.exists(path):
    return
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # held: by our chief?
      holder = read_holder(model_dir)
      # (None: the holder has the lock but has not written its line yet.)
      if holder and holder.get("cluster") != cluster_fingerprint(cluster):
        raise ModelDirBusy(busy_message(model_dir, holder)) from None
    else:
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
