"""improve-nas-cluster: a whole TF_CONFIG cluster as local processes.

    improve-nas-cluster --workers=2 --ps=1 [--evaluator] \
        [--placement=replication|round_robin] [--restarts=N] \
        -- --model_dir=runs/cluster [other improve-nas flags]

Starts a chief, N workers, M parameter servers and optionally an evaluator,
each an `improve-nas` process with its own TF_CONFIG on free localhost
ports. TensorFlow's gRPC servers listen on every interface and have no
authentication, so the cluster runs in a private network namespace of its
own, whose only interface is loopback: no other host can reach it. Where
the system allows no such namespace the command refuses to start, unless
--allow_network accepts the exposure (a trusted network only). Each line a process prints is shown prefixed with its role. When
CUDA GPUs are visible, the chief and each worker get one of their own
(round robin over the GPUs); parameter servers and the evaluator run on the
CPU. The cluster stops when the chief finishes, and the command exits with
the chief's status. A process that dies is restarted up to --restarts
times each (the search goes on; a restarted chief resumes from the last
checkpoint, without --overwrite; see the README); after that every process
is stopped and the command exits non-zero. Ctrl-C asks the chief for a
clean stop (checkpoint) and stops the others.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

from absl import app
from absl import flags

from trainer import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("workers", 1, "Workers besides the chief (>= 0).")
flags.DEFINE_integer("ps", 1, "Parameter servers (>= 1).")
flags.DEFINE_bool("evaluator", False, "Also run an evaluator that evaluates "
                  "every new checkpoint (TensorBoard run eval_evaluator).")
flags.DEFINE_enum("placement", "replication", ["replication", "round_robin"],
                  "replication: every worker trains every candidate; "
                  "round_robin: candidates spread over the workers.")
flags.DEFINE_integer("restarts", 0, "How many times each process that dies "
                     "is restarted (a chief resumes from its checkpoint).")
flags.DEFINE_string("host", "localhost", "Address the processes listen on; "
                    "one other hosts can reach needs --allow_network.")
flags.DEFINE_bool("allow_network", False, "Run the cluster on this machine's "
                  "network instead of a private loopback-only namespace: "
                  "TensorFlow's servers then listen on every interface, "
                  "unauthenticated (a trusted network only).")
flags.DEFINE_float("grace_secs", 10.0, "Seconds a stopped process gets to "
                   "exit before it is killed.")

_PROG = "improve-nas-cluster"


def _fail(message: str) -> None:
  cli.fail(_PROG, message)


def free_ports(host: str, count: int) -> List[int]:
  """`count` distinct ports free on `host` right now."""
  with contextlib.ExitStack() as stack:
    ports = []
    for _ in range(count):
      s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
      s.bind((host, 0))
      ports.append(s.getsockname()[1])
  return ports


def visible_gpus() -> List[str]:
  """CUDA device ids this process may use: CUDA_VISIBLE_DEVICES, or what
  nvidia-smi lists; empty without GPUs."""
  env = os.environ.get("CUDA_VISIBLE_DEVICES")
  if env is not None:
    return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                         timeout=20, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(out.splitlines())
          if line.startswith("GPU ")]


_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def private_network() -> Optional[str]:
  """Moves this process (and so every process it starts) into a new network
  namespace whose only interface is loopback, brought up. Returns None on
  success, else why it is not possible here.

  As root a network namespace alone; otherwise inside a new user namespace
  that maps this user to itself (Linux, unprivileged user namespaces).
  Must run before this process starts any thread.
  """
  try:
    libc = ctypes.CDLL(None, use_errno=True)
  except OSError as e:
    return str(e)
  uid, gid = os.getuid(), os.getgid()
  if libc.unshare(_CLONE_NEWNET) != 0:
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
      return f"unshare: {os.strerror(ctypes.get_errno())}"
    try:
      for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                         ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
          f.write(text)
    except OSError as e:
      return f"cannot map the user into its namespace: {e.strerror}"
  try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
      request = struct.pack("16sH22x", b"lo", 0)
      flags_now = struct.unpack("16sH22x", fcntl.ioctl(
          s, _SIOCGIFFLAGS, request))[1]
      fcntl.ioctl(s, _SIOCSIFFLAGS,
                  struct.pack("16sH22x", b"lo", flags_now | _IFF_UP))
  except OSError as e:
    return f"cannot bring up loopback in the namespace: {e.strerror}"
  return None


def interfaces() -> List[str]:
  """The network interfaces of this process's namespace."""
  with open("/proc/self/net/dev") as f:
    return [line.split(":")[0].strip() for line in f if ":" in line]


def is_loopback(host: str) -> bool:
  """Whether `host` names only this machine (localhost, 127.x, ::1)."""
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host.strip("[]")).is_loopback
  except ValueError:
    return False


def cluster_spec(host: str, workers: int, ps: int) -> Dict[str, List[str]]:
  ports = free_ports(host, 1 + workers + ps)
  spec = {"chief": [f"{host}:{ports[0]}"],
          "ps": [f"{host}:{p}" for p in ports[1 + workers:]]}
  if workers:
    spec["worker"] = [f"{host}:{p}" for p in ports[1:1 + workers]]
  return spec


def _die_with_parent() -> None:
  """In the child before exec: its own process group, so that a Ctrl-C in
  the terminal reaches only the launcher (which stops the cluster in
  order), and SIGKILL when the launcher dies (Linux)."""
  os.setpgrp()
  try:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


class TaskProcess:
  """One process of the cluster, restartable."""

  def __init__(self, kind: str, index: int, cluster, argv, gpu, out_lock):
    self.kind, self.index = kind, index
    self.name = kind if kind in ("chief", "evaluator") else f"{kind} {index}"
    self._argv = argv
    self._env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": kind, "index": index}}))
    self._env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    self._env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    self._out_lock = out_lock
    self.gpu = gpu
    self.proc: Optional[subprocess.Popen] = None
    self.restarts = 0
    self._reader: Optional[threading.Thread] = None

  def start(self) -> None:
    self.proc = subprocess.Popen(
        self._argv, env=self._env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        bufsize=1, preexec_fn=_die_with_parent)
    self._reader = threading.Thread(target=self._relay, args=(self.proc,),
                                    daemon=True)
    self._reader.start()
    where = f", GPU {self.gpu}" if self.gpu else ""
    say(f"{self.name}: pid {self.proc.pid}{where}", self._out_lock)

  def _relay(self, proc) -> None:
    for line in proc.stdout:
      with self._out_lock:
        print(f"[{self.name}] {line.rstrip()}", flush=True)

  def resume(self) -> None:
    """Later starts resume the search: --overwrite would wipe it."""
    self._argv = [a for a in self._argv
                  if not re.fullmatch(r"--(no)?overwrite(=.*)?", a)]
    self._argv.append("--nooverwrite")

  def poll(self) -> Optional[int]:
    return self.proc.poll() if self.proc else None

  def signal(self, sig) -> None:
    if self.proc and self.proc.poll() is None:
      with contextlib.suppress(ProcessLookupError):
        self.proc.send_signal(sig)

  def wait(self, timeout: float) -> Optional[int]:
    try:
      code = self.proc.wait(timeout)
    except subprocess.TimeoutExpired:
      return None
    if self._reader:
      self._reader.join(5)
    return code


def say(line: str, lock) -> None:
  with lock:
    print(f"[{_PROG}] {line}", flush=True)


def stop_all(tasks: List[TaskProcess], grace_secs: float) -> None:
  """SIGTERM every live process, then SIGKILL what is left after the
  grace period."""
  for task in tasks:
    task.signal(signal.SIGTERM)
  deadline = time.time() + grace_secs
  for task in tasks:
    if task.proc and task.wait(max(0.0, deadline - time.time())) is None:
      task.signal(signal.SIGKILL)
      task.wait(grace_secs)


def main(argv):
  forwarded = argv[1:]
  if FLAGS.workers < 0:
    _fail(f"--workers={FLAGS.workers}: must be >= 0 (workers besides the "
          "chief)")
  if FLAGS.ps < 1:
    _fail(f"--ps={FLAGS.ps}: a cluster keeps its variables on parameter "
          "servers; use --ps=1 or more")
  if FLAGS.restarts < 0:
    _fail(f"--restarts={FLAGS.restarts}: must be >= 0")
  if any(a.startswith("--config.placement") for a in forwarded):
    _fail("set the placement with improve-nas-cluster's --placement, not "
          "--config.placement")
  if not any(a.startswith("--model_dir") for a in forwarded):
    _fail("give the search's --model_dir after --, e.g. improve-nas-cluster "
          "--workers=2 -- --model_dir=runs/cluster")
  if not FLAGS.allow_network and not is_loopback(FLAGS.host):
    _fail(f"--host={FLAGS.host!r} can be reached from other machines, and "
          "TensorFlow's servers have no authentication; use "
          "--host=localhost, or pass --allow_network on a trusted network")
  lock = threading.Lock()
  if FLAGS.allow_network:
    say("--allow_network: the servers listen on every interface of this "
        "machine, without authentication; use a trusted network only", lock)
  else:
    why = private_network()
    if why is not None:
      _fail(f"cannot give the cluster a private network namespace ({why}); "
            "TensorFlow's servers would listen on every interface, "
            "unauthenticated: pass --allow_network to run them on this "
            "machine's network anyway (a trusted network only)")
    say(f"private network namespace: the cluster's ports are reachable "
        f"only from its own processes (interfaces: "
        f"{', '.join(interfaces())})", lock)
  try:
    cluster = cluster_spec(FLAGS.host, FLAGS.workers, FLAGS.ps)
  except OSError as e:
    _fail(f"--host={FLAGS.host!r}: cannot listen there ({e}); use an "
          "address of this machine such as localhost")
  command = [sys.executable, "-m", "trainer.main", *forwarded,
             f"--config.placement={FLAGS.placement}"]
  gpus = visible_gpus()
  tasks = [TaskProcess("ps", i, cluster, command, None, lock)
           for i in range(FLAGS.ps)]
  trainers = [("chief", 0)] + [("worker", i) for i in range(FLAGS.workers)]
  tasks += [TaskProcess(kind, i, cluster, command,
                 gpus[n % len(gpus)] if gpus else None, lock)
            for n, (kind, i) in enumerate(trainers)]
  if FLAGS.evaluator:
    tasks.append(TaskProcess("evaluator", 0, cluster, command, None, lock))
  chief = next(t for t in tasks if t.kind == "chief")
  say(f"cluster {json.dumps(cluster)}; {FLAGS.placement} placement"
      f"{'; GPUs ' + ','.join(gpus) if gpus else ''}", lock)

  stopping = []

  def on_signal(signum, frame):
    del frame
    if stopping:  # a second Ctrl-C: stop at once
      stop_all(tasks, 0.0)
      sys.exit(130)
    stopping.append(signum)
    say("stopping: the chief writes a checkpoint first", lock)
    chief.signal(signal.SIGINT)

  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, on_signal)
  for task in tasks:
    task.start()
  try:
    code = _supervise(chief, tasks, stopping, lock)
  finally:
    stop_all([t for t in tasks if t is not chief] + [chief], FLAGS.grace_secs)
  sys.exit(code)


def _failed(task: TaskProcess) -> bool:
  """Exited with an error; a parameter server should never exit. (A chief
  that exits 0 is done, and one that exits 2 was given bad input: neither
  is restarted.)"""
  status = task.poll()
  return status is not None and (status != 0 or task.kind == "ps")


def _supervise(chief: TaskProcess, tasks: List[TaskProcess], stopping, lock) -> int:
  """Waits for the chief, restarting other processes that fail; returns
  the command's exit status."""
  while True:
    time.sleep(0.2)
    status = chief.poll()
    # The chief is restarted only when it died: not when it finished, was
    # given bad input (2) or was stopped cleanly (130, 143 after SIGINT or
    # SIGTERM, which write a checkpoint).
    if status is not None and (stopping or status in (0, 2, 130, 143) or
                               chief.restarts >= FLAGS.restarts):
      say(f"chief exited with status {status}; stopping the cluster", lock)
      return status if status >= 0 else 128 - status
    if stopping:  # the chief is writing its checkpoint: wait for it
      continue
    for task in tasks:
      if not _failed(task):
        continue
      if task.restarts >= FLAGS.restarts:
        say(f"{task.name} exited with status {task.poll()}; stopping the "
            "cluster", lock)
        return 1
      task.restarts += 1
      say(f"{task.name} exited with status {task.poll()}; restarting it "
          f"({task.restarts} of {FLAGS.restarts})", lock)
      if task is chief:  # it resumes from the last checkpoint
        task.resume()
      task.start()


def run():
  """Console-script entry point (improve-nas-cluster)."""
  app.run(main, flags_parser=cli.flags_parser(_PROG))


if __name__ == "__main__":
  run()
