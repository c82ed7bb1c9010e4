"""The wheel, as a user installs it: built from this checkout with
`python -m build`, installed into a fresh virtual environment with its pinned
dependencies, and run from outside the checkout (slow: it installs
TensorFlow)."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Python the wheel supports; constraints.txt locks its environment.
PYTHON = "3.11"


def _find_python(version):
  """A working python{version}: on PATH, or one of pyenv's installs (its
  shims on PATH fail for versions that are not selected)."""
  pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
  candidates = [shutil.which(f"python{version}")] + sorted(glob.glob(
      os.path.join(pyenv, "versions", f"{version}.*", "bin",
                   f"python{version}")))
  for python in filter(None, candidates):
    if subprocess.run([python, "-c", "import venv"],
                      capture_output=True).returncode == 0:
      return python
  return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  out = tmp_path_factory.mktemp("dist")
  # --no-isolation: the build uses this environment's setuptools (pinned
  # in constraints.txt) instead of fetching one.
  subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                  "--outdir", str(out), ROOT], check=True,
                 capture_output=True, text=True)
  (path,) = glob.glob(str(out / "improve_nas-*.whl"))
  return path


def _run(venv, command, *args, cwd):
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return subprocess.run([os.path.join(venv, "bin", command), *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=900)


def _pip(venv, *args, cwd):
  proc = _run(venv, "pip", "install", "--quiet", "--disable-pip-version-check",
              *args, cwd=cwd)
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(wheel, tmp_path):
  python = _find_python(PYTHON)
  if python is None:
    pytest.skip(f"python{PYTHON} is not on this machine")
  venv = str(tmp_path / "venv")
  subprocess.run([python, "-m", "venv", venv], check=True)
  work = tmp_path / "work"  # not the checkout: only the wheel can be used
  work.mkdir()
  _pip(venv, f"{wheel}[cpu]", "-c", os.path.join(ROOT, "constraints.txt"),
       cwd=work)

  # The wheel cannot bring adanet (it must come without its dependencies):
  # every command says so in one line until it is installed.
  proc = _run(venv, "improve-nas-arch", "6@768", cwd=work)
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.count("\n") == 1, proc.stderr
  assert "pip install --no-deps adanet==0.9.0" in proc.stderr

  _pip(venv, "--no-deps", "adanet==0.9.0", cwd=work)
  proc = _run(venv, "python", "-c",
              "import improve_nas, improve_nas.configs as c; "
              "print(improve_nas.__file__); print(c.path('demo')); "
              "print(c.path('paper'))", cwd=work)
  assert proc.returncode == 0, proc.stderr
  for line in proc.stdout.split():
    assert line.startswith(venv) and os.path.isfile(line), line

  proc = _run(venv, "improve-nas-arch", "6@768", cwd=work)
  assert proc.returncode == 0, proc.stderr
  row = proc.stdout.strip().splitlines()[1].split()
  # NASNet-A 6@768 for 10 classes: 3.3M parameters, as in the paper.
  assert row[:2] == ["6@768", "3,328,234"], proc.stdout

  # The demo's first iteration, its config named (not a path), then the
  # report of the same model_dir.
  proc = _run(venv, "improve-nas", "--config=demo",
              "--config.max_iterations=1", "--model_dir=demo", cwd=work)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.isfile(work / "demo" / "search.json")
  assert glob.glob(str(work / "demo" / "export" / "*" / "saved_model.pb"))
  proc = _run(venv, "improve-nas-report", "--model_dir=demo", cwd=work)
  assert proc.returncode == 0, proc.stderr[-3000:]

  # The other shipped config by name, from outside the checkout too.
  proc = _run(venv, "improve-nas", "--config=paper:cifar10,w_akd",
              "--config.quick=True", f"--config.data_dir={tmp_path}",
              "--model_dir=paper", cwd=work)
  assert proc.returncode == 2 and "'cifar10' is not prepared" in proc.stderr
