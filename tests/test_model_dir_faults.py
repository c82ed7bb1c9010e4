"""A battery of damaged and contested model_dirs.

One small search runs in the background; while it runs (paused, so that
it outlasts them on a loaded machine), a second search, an --overwrite and
an --export_only on its model_dir are refused, and improve-nas-report and
TensorBoard's reader read it. Once it is done, copies
of its model_dir are damaged one way each (files cut, removed, replaced by
garbage, made unreadable, a lock left by a killed process) and given to the
commands. Each case must end in either a documented recovery (exit 0, one
line saying what was done) or one line and exit 2 that changes nothing; no
traceback ever, and nothing intact lost.
"""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from improve_nas import lock as lock_lib
from improve_nas import records

import forkserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 5
SEARCH = ["--config.image_size=8", "--config.initial_arch=1@24",
          "--config.max_iterations=2", f"--config.steps_per_iteration={STEPS}",
          "--config.batch_size=8", "--config.eval_steps=1",
          "--config.selection_steps=1", "--config.shuffle_buffer=256",
          "--config.use_aux_head=False", "--noexport", "--progress_secs=1"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)


def _run(module, *argv, timeout=300):
  return forkserver.run([sys.executable, "-m", module, *argv], cwd=ROOT,
                        env=ENV, capture_output=True, text=True,
                        timeout=timeout)


def _digest(model_dir):
  """Every file under model_dir with a hash of its bytes."""
  found = {}
  for top, _, files in os.walk(model_dir):
    for name in files:
      path = os.path.join(top, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, model_dir)] = hashlib.sha256(
            f.read()).hexdigest()
  return found


def _cut(path, size=300):
  with open(path, "r+b") as f:
    f.truncate(size)


def _die_holding_lock(model_dir):
  """A process that takes model_dir's lock and is killed holding it."""
  code = ("import os, signal, sys; from improve_nas import lock; "
          "lock.ModelDirLock(sys.argv[1]).acquire(); "
          "os.kill(os.getpid(), signal.SIGKILL)")
  proc = subprocess.run([sys.executable, "-c", code, str(model_dir)],
                        cwd=ROOT, env=ENV, timeout=120)
  assert proc.returncode == -signal.SIGKILL
  return lock_lib.read_holder(str(model_dir))["pid"]


def _can_become_nobody():
  return os.geteuid() == 0 and subprocess.run(
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
       "true"], capture_output=True).returncode == 0


# What is damaged, how the command is run, and what must come of it:
# (name, damage(model_dir) -> extra, argv, expect) where expect is
# ("recovers", [texts on stdout]) or ("refuses", [texts in the one line]).
def _checkpoint_prefixes(model_dir):
  return tf.train.get_checkpoint_state(str(model_dir)).all_model_checkpoint_paths


def _newest_checkpoint_cut(d):
  newest = tf.train.latest_checkpoint(str(d))
  _cut(newest + ".data-00000-of-00002", 1000)
  return os.path.basename(newest)


def _every_checkpoint_cut(d):
  for path in tf.io.gfile.glob(str(d / "*.ckpt-*.data-00000-of-*")):
    _cut(path, 1000)


def _checkpoints_removed(d):
  for path in tf.io.gfile.glob(str(d / "*.ckpt-*")):
    os.remove(path)


def _largest_data_file(d):
  """The full-disk case's limit: no file may outgrow the largest checkpoint
  data file there is, so the next iteration's checkpoint (one member more)
  cannot be written."""
  return max(os.path.getsize(p) for p in
             tf.io.gfile.glob(str(d / "*.ckpt-*.data-*")))


CASES = [
    ("search.json cut short", lambda d: _cut(d / "search.json"), "trainer",
     ("recovers", ["search.json was damaged (not valid JSON",
                   "kept as search.json.damaged", "rebuilt the records of 2 "
                   "iteration(s) from the TensorBoard run 'search'"])),
    ("search.json removed", lambda d: os.remove(d / "search.json"), "trainer",
     ("recovers", ["search.json is missing; rebuilt the records of 2"])),
    ("search.json replaced by binary garbage, read by improve-nas-report",
     lambda d: (d / "search.json").write_bytes(b"\xff\xfe\x00garbage"),
     "report", ("recovers", ["search.json is damaged (not UTF-8 text); these "
                             "are the records saved in the TensorBoard run"])),
    ("config.json cut short", lambda d: _cut(d / "config.json", 40),
     "trainer", ("recovers", ["config.json was damaged (not valid JSON",
                              "using its copy from the TensorBoard run",
                              "kept the damaged file as config.json.damaged"])),
    ("config.json cut short, resumed with another config",
     lambda d: _cut(d / "config.json", 40), "trainer_other_config",
     ("refuses", ["holds a search with another config: "
                  "config.learning_rate=0.05 (now 0.5)"])),
    ("config.json emptied, its TensorBoard copy gone too",
     lambda d: ((d / "config.json").write_text(""),
                shutil.rmtree(d / "search")), "trainer",
     ("refuses", ["config.json is damaged (empty)"])),
    ("config.json unreadable", lambda d: os.chmod(d / "config.json", 0),
     "trainer_as_nobody",
     ("refuses", ["config.json cannot be read (Permission denied); make it "
                  "readable"])),
    ("newest checkpoint's data cut short", _newest_checkpoint_cut, "trainer",
     ("recovers", [f"skipped checkpoint model.ckpt-{2 * STEPS} (Read less "
                   "bytes than requested)", f"resuming from model.ckpt-{STEPS}"
                   ", the newest intact checkpoint"])),
    ("every checkpoint's data cut short", _every_checkpoint_cut, "trainer",
     ("refuses", ["holds no intact checkpoint", "nothing was changed"])),
    ("checkpoint files removed", _checkpoints_removed, "trainer",
     ("refuses", [f"holds no intact checkpoint (model.ckpt-{2 * STEPS}: its "
                  ".index file is missing"])),
    ("checkpoints and their state file removed",
     lambda d: (_checkpoints_removed(d), os.remove(d / "checkpoint")),
     "trainer", ("refuses", ["search.json records 2 finished iteration(s), "
                             "but", "holds no checkpoint to resume them"])),
    ("checkpoint state file replaced by garbage",
     lambda d: (d / "checkpoint").write_text("garbage ::: {"), "trainer",
     ("recovers", ["checkpoint state file", "was unusable",
                   "rebuilt it from the checkpoints on disk"])),
    ("disk full while the next iteration checkpoints", _largest_data_file,
     "trainer_disk_full",
     ("refuses", ["could not write to --model_dir=", "(file too large); free "
                  "space there and run the same command to resume from the "
                  "last checkpoint, which is intact"])),
    ("lock left by a killed search", _die_holding_lock, "trainer",
     ("recovers", ["took over the lock of", "is no longer running"])),
    ("lock file replaced by garbage",
     lambda d: (d / lock_lib.LOCK_FILE).write_bytes(b"\x00zz"), "trainer",
     ("recovers", ["took over the lock", "an unknown process"])),
]


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
  root = tmp_path_factory.mktemp("model_dir_faults")
  base = root / "base"
  search = subprocess.Popen(
      [sys.executable, "-m", "trainer.main", *SEARCH,
       f"--model_dir={base}"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, start_new_session=True)
  live = {}
  try:
    # Once it holds the lock and has written its first checkpoint, the
    # search is paused (SIGSTOP) while the others race it, so that it is
    # still running however long they take on a loaded machine.
    deadline = time.time() + 300
    while (((lock_lib.read_holder(str(base)) or {}).get("pid") != search.pid
            or not tf.io.gfile.glob(str(base / "model.ckpt-*.index")))
           and time.time() < deadline and search.poll() is None):
      time.sleep(0.2)
    assert search.poll() is None, search.stdout.read()[-3000:]
    os.kill(search.pid, signal.SIGSTOP)
    before = records.load_saved_config(str(base))
    # All at once, as users racing each other would.
    commands = {
        "second search": ["trainer.main", *SEARCH, f"--model_dir={base}"],
        "--overwrite": ["trainer.main", *SEARCH, "--overwrite",
                        f"--model_dir={base}"],
        "--export_only": ["trainer.main", "--export_only",
                          f"--model_dir={base}"],
        "report": ["trainer.report", f"--model_dir={base}"]}
    started = {what: forkserver.Popen(
        [sys.executable, "-m", *argv], cwd=ROOT, env=ENV, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for what, argv in commands.items()}
    for what, proc in started.items():
      out, err = proc.communicate(timeout=300)
      live[what] = subprocess.CompletedProcess(proc.args, proc.returncode,
                                               out, err)
    reads = 0
    for run in ("search", ""):
      accumulator = event_accumulator.EventAccumulator(str(base / run))
      accumulator.Reload()
      reads += 1
    live["tensorboard reads"] = reads
    live["still running"] = search.poll() is None
    live["config unchanged"] = records.load_saved_config(str(base)) == before
    os.kill(search.pid, signal.SIGCONT)
    out, _ = search.communicate(timeout=600)
  except BaseException:
    os.killpg(search.pid, signal.SIGKILL)
    raise
  assert search.returncode == 0, out[-3000:]
  live["search output"] = out
  baseline = records.load_records(str(base))
  assert len(baseline) == 2

  nobody = _can_become_nobody()
  cases, dirs, digests, skipped = [], [], [], {}
  # The permission case runs as nobody, who must be able to reach it.
  shared = pathlib.Path(tempfile.mkdtemp(prefix="improve_nas_faults_"))
  os.chmod(shared, 0o755)
  for i, (name, damage, how, _) in enumerate(CASES):
    model_dir = (shared if how.endswith("nobody") else root) / f"case{i}"
    shutil.copytree(base, model_dir)
    extra = damage(model_dir)
    dirs.append(model_dir)
    if how == "trainer_as_nobody":
      if not nobody:
        skipped[i] = "needs root and a user nobody to take permissions away"
      for top, subdirs, files in os.walk(model_dir):
        for entry in subdirs + files:
          path = os.path.join(top, entry)
          if entry != "config.json":
            os.chmod(path, 0o777 if os.path.isdir(path) else 0o666)
      os.chmod(model_dir, 0o777)
    digests.append(_digest(model_dir))
    argv = [*SEARCH, f"--model_dir={model_dir}"]
    if how == "trainer_other_config":
      argv.append("--config.learning_rate=0.5")
    case = {"argv": argv, "user": "nobody" if how.endswith("nobody")
            else None}
    if how == "trainer_disk_full":  # one more iteration, on a full disk
      argv[argv.index("--config.max_iterations=2")] = (
          "--config.max_iterations=3")
      case["max_file_bytes"] = extra
    cases.append(case)
  runnable = [i for i, (_, _, how, _) in enumerate(CASES)
              if how != "report" and i not in skipped]
  # Two batteries side by side, one per core.
  halves = [runnable[0::2], runnable[1::2]]
  procs = []
  for n, half in enumerate(halves):
    (root / f"cases{n}.json").write_text(json.dumps([cases[i] for i in half]))
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "cli_battery.py"),
         str(root / f"cases{n}.json"), str(root / f"results{n}.json")],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True))
  results = {}
  for n, proc in enumerate(procs):
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    results.update(zip(halves[n], json.loads(
        (root / f"results{n}.json").read_text())))
  for i, (_, _, how, _) in enumerate(CASES):
    if how == "report":
      p = _run("trainer.report", f"--model_dir={dirs[i]}")
      results[i] = {"returncode": p.returncode, "stdout": p.stdout,
                    "stderr": p.stderr}
    elif i in skipped:
      results[i] = {"skipped": skipped[i]}
  yield {"live": live, "base": base, "baseline": baseline, "dirs": dirs,
         "digests": digests, "results": results}
  shutil.rmtree(shared, ignore_errors=True)


def test_the_battery_has_at_least_10_damaged_or_contested_model_dirs():
  assert len(CASES) + 5 >= 10


def _one_line_refusal(result, prog="improve-nas"):
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), lines
  return lines[0]


def test_a_running_search_is_refused_to_every_other_writer(battery):
  live, base = battery["live"], battery["base"]
  assert live["still running"], "the search ended before the checks"
  host = socket.gethostname()
  for what in ("second search", "--overwrite", "--export_only"):
    line = _one_line_refusal(live[what])
    assert "is in use by pid " in line and f" on {host} (search since " in (
        line), line
    assert "Traceback" not in live[what].stdout + live[what].stderr
  # Nothing the running search had written was touched, and it finished.
  assert live["config unchanged"]
  assert "Traceback" not in live["search output"]
  assert [r.iteration for r in battery["baseline"]] == [0, 1]
  assert not lock_lib.read_holder(str(base))  # released at the end


def test_readers_read_a_running_search(battery):
  live = battery["live"]
  report = live["report"]
  assert report.returncode == 0, report.stderr[-3000:]
  assert "running (or stopped)" in report.stdout
  assert "Traceback" not in report.stdout + report.stderr
  assert live["tensorboard reads"] == 2


@pytest.mark.parametrize("index", range(len(CASES)))
def test_damaged_model_dir(battery, index):
  name, _, how, (outcome, texts) = CASES[index]
  result = battery["results"][index]
  if "skipped" in result:
    pytest.skip(f"{name}: {result['skipped']}")
  model_dir = battery["dirs"][index]
  output = result["stdout"] + result["stderr"]
  assert "Traceback" not in output, (name, output[-3000:])
  if outcome == "refuses":
    lines = result["stderr"].strip().splitlines()
    assert result["returncode"] == 2, (name, output[-3000:])
    assert len(lines) == 1, (name, lines)
    assert lines[0].startswith("improve-nas: error: "), lines[0]
    for text in texts:
      assert text in lines[0], (name, lines[0])
    # Refused: not one byte changed. (With a full disk: not one byte of the
    # checkpoints, their state file and the records; config.json says 3
    # iterations now, and the event files got what summaries fitted.)
    after, before = _digest(model_dir), battery["digests"][index]
    if how == "trainer_disk_full":
      before = {k: v for k, v in before.items()
                if ".ckpt-" in k or k in ("checkpoint", "search.json")}
      after = {k: after.get(k) for k in before}
    if how != "trainer_as_nobody":
      assert after == before, name
    return
  assert result["returncode"] == 0, (name, output[-3000:])
  for text in texts:
    assert text in result["stdout"], (name, result["stdout"][-3000:])
  if how == "report":  # a reader changes nothing in the model_dir
    unreported = lambda files: {k: v for k, v in files.items()
                                if not k.startswith("report/")}
    assert unreported(_digest(model_dir)) == unreported(
        battery["digests"][index]), name
    return
  # Recovered: the search's records are whole again, and what was damaged
  # was moved aside, not deleted.
  saved = records.load_records(str(model_dir))
  baseline = battery["baseline"]
  assert [r.iteration for r in saved] == [0, 1], name
  assert [r.ensemble_archs for r in saved] == [r.ensemble_archs
                                               for r in baseline]
  if "checkpoint" not in name:
    assert saved == baseline, name
  assert tf.train.latest_checkpoint(str(model_dir)).endswith(
      f"model.ckpt-{2 * STEPS}"), name
  before = battery["digests"][index]
  kept = set(_digest(model_dir))
  for path in before:
    moved = (os.path.join("damaged", os.path.basename(path)) in kept or
             os.path.join("damaged", "stale", path) in kept or
             path + ".damaged" in kept)
    assert path in kept or moved, (name, path)
  assert not lock_lib.read_holder(str(model_dir))


def test_cluster_members_share_the_chiefs_lock(tmp_path):
  cluster = {"chief": ["localhost:1"], "ps": ["localhost:2"]}
  other = {"chief": ["localhost:3"], "ps": ["localhost:4"]}
  chief = lock_lib.ModelDirLock(str(tmp_path), cluster=cluster)
  assert chief.acquire() is None
  try:
    lock_lib.check_cluster_member(str(tmp_path), cluster)  # its own chief
    with pytest.raises(lock_lib.ModelDirBusy, match="is in use by pid "):
      lock_lib.check_cluster_member(str(tmp_path), other)
    with pytest.raises(lock_lib.ModelDirBusy, match=f"pid {os.getpid()} "):
      lock_lib.ModelDirLock(str(tmp_path)).acquire()
  finally:
    chief.release()
  lock_lib.check_cluster_member(str(tmp_path), other)  # free: no holder
  with lock_lib.ModelDirLock(str(tmp_path)) as again:
    assert again.held
