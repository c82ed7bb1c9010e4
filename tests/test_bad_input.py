"""The bad-input battery: every wrong flag, config value, dataset, data
directory or model_dir is one line on stderr naming the value and the fix,
exit status 2, no traceback, and the model_dir exactly as it was.

The command lines run through tests/cli_battery.py: the real command in a
fresh forked process each, after one shared import of TensorFlow.
"""

import os
import pwd
import shutil
import stat
import tempfile

import pytest

import killable

from test_data import CIFAR10_COUNTS, write_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, argv without --model_dir, substrings the one line must hold[,
# environment variables to set]).
# "{data}" is a prepared folder of CIFAR-10 binary files, "{empty}" an empty
# folder, "{file}" a plain file, "{truncated}" a folder whose test file is
# cut, "{pickle}" a folder with the python-pickle CIFAR distribution.
CASES = [
    ("unknown flag", ["--no_such_flag=1"], ["no_such_flag"]),
    ("unknown config field", ["--config.no_such_field=1"], ["no_such_field"]),
    ("stray argument", ["train"], ["unexpected arguments", "train"]),
    ("int field given a word", ["--config.batch_size=abc"],
     ["batch_size", "abc"]),
    ("float field given a word", ["--config.learning_rate=fast"],
     ["learning_rate", "fast"]),
    ("bool field given a word", ["--config.quick=maybe"], ["quick", "maybe"]),
    ("zero batch size", ["--config.batch_size=0"],
     ["config.batch_size=0", "positive integer"]),
    ("negative batch size", ["--config.batch_size=-8"],
     ["config.batch_size=-8", "positive integer"]),
    ("zero steps per iteration", ["--config.steps_per_iteration=0"],
     ["steps_per_iteration=0", "positive integer"]),
    ("negative iterations", ["--config.max_iterations=-1"],
     ["max_iterations=-1", "positive integer"]),
    # absl's rule for a flag given twice: the last value counts (had the
    # first one counted, this would search).
    ("a field overridden twice, last with a bad value",
     ["--config.max_iterations=1", "--config.max_iterations=0"],
     ["config.max_iterations=0: must be a positive integer"]),
    ("negative image size", ["--config.image_size=-4"],
     ["image_size=-4", ">= 0"]),
    ("image size the tower cannot halve twice", ["--config.image_size=10"],
     ["image_size=10", "multiple of 4"]),
    ("negative evaluation steps", ["--config.eval_steps=-1"],
     ["eval_steps=-1", ">= 0"]),
    ("zero auxiliary-head channels", ["--config.aux_head_filters=0"],
     ["config.aux_head_filters=0", "positive integer"]),
    ("zero shuffle buffer", ["--config.shuffle_buffer=0"],
     ["shuffle_buffer=0", "positive integer"]),
    ("filters not a multiple of 24", ["--config.initial_arch=6@770"],
     ["6@770", "6@768"]),
    ("architecture that does not parse", ["--config.initial_arch=banana"],
     ["banana", "N@P"]),
    ("unknown generator", ["--config.generator=random"],
     ["generator='random'", "constant"]),
    ("unknown distillation mode", ["--config.knowledge_distillation=teacher"],
     ["knowledge_distillation='teacher'", "adaptive"]),
    ("budget below the smallest tower", ["--config.param_budget=10"],
     ["param_budget=10", "raise it"]),
    ("negative learning rate", ["--config.learning_rate=-0.1"],
     ["learning_rate=-0.1", ">= 0"]),
    ("zero distillation temperature", ["--config.kd_temperature=0.0"],
     ["kd_temperature=0.0", "> 0"]),
    ("keep probability above 1", ["--config.drop_path_keep_prob=1.5"],
     ["drop_path_keep_prob=1.5", "(0, 1]"]),
    ("negative progress interval", ["--progress_secs=-1"],
     ["progress_secs=-1", ">= 0"]),
    ("unknown distribution", ["--distribution=multi"],
     ["--distribution=multi", "mirrored"]),
    ("cpu devices without mirrored", ["--cpu_devices=2"],
     ["--cpu_devices=2", "--distribution=mirrored"]),
    ("negative cpu devices", ["--distribution=mirrored", "--cpu_devices=-1"],
     ["--cpu_devices=-1", ">= 0"]),
    ("mirrored on a cluster", ["--distribution=mirrored"],
     ["--distribution=mirrored", "one machine", "TF_CONFIG"],
     {"TF_CONFIG": '{"cluster": {"chief": ["localhost:2222"]}, '
                   '"task": {"type": "chief", "index": 0}}'}),
    ("missing config file", ["--config=/no/such/config.py"],
     ["config.py", "config file"]),
    ("dataset that does not exist", ["--config.dataset=no_such_dataset"],
     ["no_such_dataset"]),
    ("split the dataset lacks", ["--config.eval_split=validation"],
     ["validation", "test"]),
    ("data directory that is missing",
     ["--config.dataset=cifar10", "--config.data_dir={empty}/nope"],
     ["{empty}/nope"]),
    ("data directory that is empty",
     ["--config.dataset=cifar10", "--config.data_dir={empty}"],
     ["{empty}", "not prepared", "tfds build cifar10"]),
    ("data directory that is a file",
     ["--config.dataset=cifar10", "--config.data_dir={file}"],
     ["{file}", "not a directory"]),
    ("python-pickle CIFAR download instead of the binary one",
     ["--config.dataset=cifar10", "--config.data_dir={pickle}"],
     ["cifar-10-batches-py", "binary"]),
    ("truncated data file",
     ["--config.dataset=cifar10", "--config.data_dir={truncated}"],
     ["test_batch.bin", "re-extract"]),
    ("TF_CONFIG that is not JSON", [],
     ["TF_CONFIG='{oops'", "not a cluster description"],
     {"TF_CONFIG": "{oops"}),
    ("TF_CONFIG with an unknown task type", [],
     ["task type 'master'", "fix the task in TF_CONFIG"],
     {"TF_CONFIG": '{"cluster": {"chief": ["localhost:1"]}, '
                   '"task": {"type": "master", "index": 0}}'}),
    ("allocator threshold that is not a size", [],
     ["IMPROVE_NAS_MMAP_THRESHOLD='lots'", "65536"],
     {"IMPROVE_NAS_MMAP_THRESHOLD": "lots"}),
]


def _fill(value, paths):
  for key, path in paths.items():
    value = value.replace("{" + key + "}", path)
  return value


def _cannot_run_as_nobody():
  """None where the permission cases can run: not root (they run as this
  user), or root and able to become "nobody" (tests/cli_battery.py does
  in each forked child). Otherwise why not: Bazel's sandbox, for one, maps
  only root into its user namespace."""
  if os.geteuid() != 0:
    return None
  nobody = pwd.getpwnam("nobody")
  pid = os.fork()
  if pid == 0:
    code = 1
    try:
      os.setgid(nobody.pw_gid)
      os.setuid(nobody.pw_uid)
      code = 0
    finally:
      os._exit(code)  # pylint: disable=protected-access
  _, status = os.waitpid(pid, 0)
  if os.waitstatus_to_exitcode(status):
    return "a process of root cannot become user nobody here"
  return None


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
  root = tmp_path_factory.mktemp("battery")
  data, empty = root / "data", root / "empty"
  data.mkdir()
  empty.mkdir()
  write_cifar(str(data), "cifar10", CIFAR10_COUNTS)
  truncated = root / "truncated"
  shutil.copytree(data, truncated)
  with open(truncated / "cifar-10-batches-bin" / "test_batch.bin", "r+b") as f:
    f.truncate(3073 * 2 + 17)
  pickle = root / "pickle"
  (pickle / "cifar-10-batches-py").mkdir(parents=True)
  (pickle / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
  blocker = root / "notes.txt"
  blocker.write_text("mine")
  paths = {"empty": str(empty), "file": str(blocker),
           "truncated": str(truncated), "pickle": str(pickle)}
  cases, model_dirs = [], []
  for i, case in enumerate(CASES):
    model_dir = root / f"run{i}"
    model_dir.mkdir()
    (model_dir / "keep.txt").write_text("precious")
    model_dirs.append(model_dir)
    cases.append({"argv": [_fill(a, paths) for a in case[1]] +
                          [f"--model_dir={model_dir}", "--overwrite"],
                  "env": case[3] if len(case) > 3 else {}})
  # Where permissions count: as root the cases run as "nobody".
  shared = tempfile.mkdtemp(prefix="improve_nas_battery_")
  os.chmod(shared, 0o755)
  locked = os.path.join(shared, "locked")
  os.mkdir(locked)
  unreadable = os.path.join(shared, "unreadable")
  os.mkdir(unreadable)
  writable = os.path.join(shared, "writable")
  os.mkdir(writable)
  os.chmod(writable, 0o777)
  extra = [
      ("model_dir that is a file", [f"--model_dir={blocker}"],
       [str(blocker), "is a file"]),
      ("model_dir under a file", [f"--model_dir={blocker}/run"],
       [str(blocker), "is a file"]),
      ("model_dir not writable", [f"--model_dir={locked}/run"],
       [locked, "not writable"]),
      ("data directory that is unreadable",
       ["--config.dataset=cifar10", f"--config.data_dir={unreadable}",
        f"--model_dir={writable}/run"], [unreadable, "not readable"]),
  ]
  cannot_switch = _cannot_run_as_nobody()
  skipped = {}  # index -> why the case cannot run here
  for name, argv, _ in extra:
    user = ("nobody" if "writable" in name or "unreadable" in name
            else None)
    if user and cannot_switch:
      skipped[len(cases)] = cannot_switch
    cases.append({"argv": argv + ["--overwrite"], "user": user})
  os.chmod(locked, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP |
           stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
  os.chmod(unreadable, 0)
  try:
    results = killable.run_battery(
        [case for i, case in enumerate(cases) if i not in skipped], root,
        ROOT, timeout=600)
  finally:
    os.chmod(unreadable, 0o755)
    os.chmod(locked, 0o755)
  for i in sorted(skipped):
    results.insert(i, {"skipped": skipped[i]})
  yield {"cases": CASES + extra, "results": results, "paths": paths,
         "model_dirs": model_dirs, "blocker": blocker,
         "writable": writable}
  shutil.rmtree(shared, ignore_errors=True)


def test_the_battery_has_at_least_25_cases(battery):
  assert len(battery["results"]) >= 25


@pytest.mark.parametrize("index", range(len(CASES) + 4))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(battery, index):
  name, expected = battery["cases"][index][0], battery["cases"][index][2]
  result = battery["results"][index]
  if "skipped" in result:
    pytest.skip(f"{name}: {result['skipped']}")
  lines = result["stderr"].strip().splitlines()
  assert result["returncode"] == 2, (name, result)
  assert len(lines) == 1, (name, result["stderr"][-3000:])
  assert lines[0].startswith("improve-nas: error: "), (name, lines[0])
  assert "Traceback" not in result["stderr"] + result["stdout"]
  for text in expected:
    assert _fill(text, battery["paths"]) in lines[0], (name, lines[0])
  if index < len(CASES):
    model_dir = battery["model_dirs"][index]
    assert sorted(os.listdir(model_dir)) == ["keep.txt"], name
    assert (model_dir / "keep.txt").read_text() == "precious"
  assert battery["blocker"].read_text() == "mine"
  assert not os.path.exists(os.path.join(battery["writable"], "run"))
