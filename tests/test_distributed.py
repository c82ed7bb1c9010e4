"""A search on a TF_CONFIG cluster: task parsing, and improve-nas-cluster
running real chief, worker, parameter-server and evaluator processes on
localhost ports."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from improve_nas import tf_config
from improve_nas.errors import ConfigError
from improve_nas.search import load_search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = {"chief": ["localhost:2222"], "worker": ["localhost:2223"],
           "ps": ["localhost:2224"]}


def _tf_config(kind, index=0, cluster=None):
  return {"TF_CONFIG": json.dumps({"cluster": cluster or CLUSTER,
                                   "task": {"type": kind, "index": index}})}


def test_task_comes_from_tf_config():
  assert not tf_config.current_task({}).distributed
  assert str(tf_config.current_task({"TF_CONFIG": " "})) == "local"
  task = tf_config.current_task(_tf_config("worker"))
  assert (task.type, task.index, task.cluster) == ("worker", 0, CLUSTER)
  assert str(tf_config.current_task(_tf_config("ps"))) == "ps 0"
  assert tf_config.current_task(_tf_config("evaluator")).type == "evaluator"


@pytest.mark.parametrize("environ, expected", [
    ({"TF_CONFIG": "{cluster"}, "is not a cluster description"),
    (_tf_config("master"), "task type 'master' is not one of"),
    (_tf_config("worker", 1), "task worker 1: the cluster has 1 worker"),
    (_tf_config("worker", cluster={"worker": ["localhost:1"]}),
     "needs exactly one \"chief\""),
])
def test_bad_tf_config_is_one_clear_error(environ, expected):
  with pytest.raises(ConfigError, match=re.escape(expected)):
    tf_config.current_task(environ)


def test_workers_only_talk_to_parameter_servers_and_themselves():
  base = tf.compat.v1.ConfigProto(allow_soft_placement=True)
  worker = tf_config.session_config(
      tf_config.current_task(_tf_config("worker")), base)
  assert list(worker.device_filters) == ["/job:ps", "/job:worker/task:0"]
  assert worker.allow_soft_placement
  chief = tf_config.session_config(
      tf_config.current_task(_tf_config("chief")), base)
  assert list(chief.device_filters) == ["/job:ps", "/job:chief/task:0"]
  assert not base.device_filters  # the base is left alone


# The demo config shrunk to tiny towers on 8x8 digits (quick mode, but
# with the steps per iteration left to the test).
TINY = ["--config.initial_arch=1@24", "--config.width_increment=24",
        "--config.batch_size=8", "--config.eval_steps=1",
        "--config.selection_steps=1", "--config.shuffle_buffer=256",
        "--config.use_aux_head=False"]


def _cluster_command(*flags, model_dir, search_flags=()):
  steps = ([] if any("steps_per_iteration" in a for a in search_flags)
           else ["--config.steps_per_iteration=3"])
  return [sys.executable, "-m", "trainer.cluster", *flags, "--", *TINY,
          *steps, "--noexport", "--progress_secs=1",
          f"--model_dir={model_dir}", *search_flags]


@pytest.mark.parametrize("flags, expected", [
    (["--ps=0"], "--ps=0: a cluster keeps its variables on parameter servers"),
    (["--workers=-1"], "--workers=-1: must be >= 0"),
    (["--placement=scatter"], "scatter"),
    (["--host=192.0.2.7"], "--host='192.0.2.7' can be reached from other "
     "machines, and TensorFlow's servers have no authentication"),
])
def test_bad_cluster_flags_are_one_line_exit_2(tmp_path, flags, expected):
  proc = subprocess.run(_cluster_command(*flags, model_dir=tmp_path / "run"),
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2, proc.stderr
  assert len(lines) == 1 and expected in lines[0], lines
  assert not (tmp_path / "run").exists()


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie (exited, not yet reaped by its parent) is gone too.
  with open(f"/proc/{pid}/stat") as f:
    return f.read().split(")")[-1].split()[0] != "Z"


class _Cluster:
  """improve-nas-cluster in the background; its output collected line by
  line; every process it started is killed at the end, pass or fail."""

  def __init__(self, command):
    self.lines = []
    self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.append(line.rstrip("\n"))

  def pids(self):
    return {m.group(1): int(m.group(2)) for line in self.lines
            for m in [re.match(r"\[improve-nas-cluster\] (.+): pid (\d+)",
                               line)] if m}

  def wait_for(self, pattern, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline and self.proc.poll() is None:
      if any(re.search(pattern, line) for line in self.lines):
        return True
      time.sleep(0.2)
    return any(re.search(pattern, line) for line in self.lines)

  def finish(self, timeout):
    try:
      return self.proc.wait(timeout)
    finally:
      self.stop()

  def stop(self):
    if self.proc.poll() is None:
      os.killpg(self.proc.pid, signal.SIGKILL)
      self.proc.wait()
    for pid in self.pids().values():
      if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    self._reader.join(10)

  def output(self):
    return "\n".join(self.lines)


def _check_complete(model_dir, iterations, cluster):
  saved = load_search(str(model_dir))
  assert saved is not None, cluster.output()[-4000:]
  assert [r.iteration for r in saved["records"]] == list(range(iterations))
  assert len(saved["records"][-1].ensemble_archs) == iterations
  # Every process is gone once the command has returned.
  assert not [name for name, pid in cluster.pids().items() if _alive(pid)]


def _listening_ports(pid="self"):
  """Ports in state LISTEN in the network namespace of process `pid`."""
  ports = set()
  for name in ("tcp", "tcp6"):
    with open(f"/proc/{pid}/net/{name}") as f:
      for line in list(f)[1:]:
        fields = line.split()
        if fields[3] == "0A":  # TCP_LISTEN
          ports.add(int(fields[1].rsplit(":", 1)[1], 16))
  return ports


def _outward_address():
  """This machine's address on its default route (no packet is sent)."""
  with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    try:
      s.connect(("192.0.2.1", 9))
    except OSError:
      return None
    return s.getsockname()[0]


def _check_private_ports(cluster):
  """While the cluster runs: its servers listen, but only inside a network
  namespace whose one interface is loopback; from this machine's own
  namespace no port of the cluster is open, on any address."""
  assert cluster.wait_for(r"\[ps 0\] improve-nas: parameter server 0", 200), (
      cluster.output()[-3000:])
  spec = json.loads(next(line for line in cluster.lines if "cluster {" in line)
                    .split("cluster ", 1)[1].split("; ")[0])
  ports = {int(a.rsplit(":", 1)[1]) for v in spec.values() for a in v}
  pid = cluster.pids()["ps 0"]
  deadline = time.time() + 60
  while not ports & _listening_ports(pid) and time.time() < deadline:
    time.sleep(0.5)
  assert ports & _listening_ports(pid), "the parameter server never listened"
  with open(f"/proc/{pid}/net/dev") as f:
    assert [l.split(":")[0].strip() for l in f if ":" in l] == ["lo"]
  assert not ports & _listening_ports()
  address = _outward_address()
  if address and not address.startswith("127."):
    for port in ports:
      with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex((address, port)) != 0, (address, port)


def test_one_worker_cluster_trains_an_iteration(tmp_path):
  model_dir = tmp_path / "run"
  cluster = _Cluster(_cluster_command(
      "--workers=1", "--ps=1", model_dir=model_dir,
      search_flags=["--config.max_iterations=1"]))
  try:
    _check_private_ports(cluster)
  except BaseException:
    cluster.stop()
    raise
  code = cluster.finish(timeout=400)
  out = cluster.output()
  assert code == 0, out[-4000:]
  _check_complete(model_dir, 1, cluster)
  assert set(cluster.pids()) == {"chief", "worker 0", "ps 0"}
  # Each process's lines carry its role.
  assert "[chief] improve-nas: " in out and "as the chief of a cluster" in out
  assert "[worker 0] improve-nas: worker 0 of a cluster of" in out
  assert "[ps 0] improve-nas: parameter server 0" in out
  assert "Traceback" not in out
  assert "chief exited with status 0" in out
  assert "private network namespace" in out


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["replication", "round_robin"])
def test_cluster_search(tmp_path, placement):
  model_dir = tmp_path / "run"
  cluster = _Cluster(_cluster_command(
      "--workers=2", "--ps=1", "--evaluator",
      f"--placement={placement}", model_dir=model_dir,
      search_flags=["--config.max_iterations=2"]))
  code = cluster.finish(timeout=900)
  out = cluster.output()
  assert code == 0, out[-4000:]
  _check_complete(model_dir, 2, cluster)
  assert f"{placement} placement" in out
  # The evaluator evaluated checkpoints as they came (the cluster stops it
  # when the chief is done, whichever checkpoint it is on).
  assert re.search(r"\[evaluator\]   step \d+: accuracy", out), out[-4000:]
  assert tf.io.gfile.glob(str(model_dir / "eval_evaluator" / "events.*"))


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["worker 1", "ps 0", "chief"])
def test_a_killed_task_is_restarted_and_the_search_completes(tmp_path,
                                                             victim):
  model_dir = tmp_path / "run"
  # --overwrite starts the search afresh; a restarted chief must resume it.
  cluster = _Cluster(_cluster_command(
      "--workers=2", "--ps=1", "--restarts=1", model_dir=model_dir,
      search_flags=["--config.max_iterations=2",
                    "--config.steps_per_iteration=40", "--overwrite"]))
  try:
    # Mid-iteration: the chief reports training progress.
    assert cluster.wait_for(r"\[chief\]   iteration 1/2  step", 400), (
        cluster.output()[-4000:])
    os.kill(cluster.pids()[victim], signal.SIGKILL)
    assert cluster.wait_for(rf"{victim} exited with status -9; restarting",
                            60), cluster.output()[-4000:]
  except BaseException:
    cluster.stop()
    raise
  code = cluster.finish(timeout=900)
  out = cluster.output()
  assert code == 0, out[-4000:]
  _check_complete(model_dir, 2, cluster)
  resumed = re.findall(r"\[chief\]   resuming from model\.ckpt-\d+", out)
  if victim == "chief":
    assert len(resumed) == 1, out[-4000:]
  else:
    assert not resumed, out[-4000:]


def test_kubernetes_manifest_runs_one_search_in_every_role():
  import yaml  # pylint: disable=g-import-not-at-top
  with open(os.path.join(ROOT, "deploy", "tfjob.yaml")) as f:
    job = yaml.safe_load(f)
  assert job["kind"] == "TFJob"
  specs = job["spec"]["tfReplicaSpecs"]
  assert set(specs) == {"Chief", "Worker", "PS", "Evaluator"}
  assert specs["Chief"]["replicas"] == 1
  commands = {role: spec["template"]["spec"]["containers"][0]["command"]
              for role, spec in specs.items()}
  for role, command in commands.items():
    assert command[0] == "improve-nas", role
    flags = dict(a.split("=", 1) for a in command[1:])
    # One search: the same config and model_dir in every pod.
    assert flags["--model_dir"] == "/runs/cifar10_w_akd", role
    assert flags["--config"] == "paper:cifar10,w_akd", role
