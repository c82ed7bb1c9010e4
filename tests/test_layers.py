"""The layers: the AdaNAS algorithm imports neither adanet nor tf.estimator,
the adanet engine and the Keras engine sit on top of it, neither engine
imports the other, and no module imports one that imports it back."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("improve_nas", "trainer")

# The adanet engine: everything that imports adanet or tf.estimator, and
# what is built on it. Every other module of improve_nas is the algorithm
# layer, which a second engine can reuse.
ENGINE = {"improve_nas.compat", "improve_nas.builder", "improve_nas.ensemble",
          "improve_nas.adanas_estimator", "improve_nas.estimator",
          "improve_nas.export", "improve_nas.progress", "improve_nas.search",
          "improve_nas.roles", "improve_nas.growth"}
# Modules may grow to about this many lines before they are split.
MAX_LINES = 400


def _modules():
  """{module name: path} of every module of the packages."""
  found = {}
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
          found[module.removesuffix(".__init__")] = path
  return found


MODULES = _modules()


def _imports(path):
  """The project modules `path` imports, at its top or inside functions."""
  tree = ast.parse(open(path).read(), path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [node.module] + [f"{node.module}.{alias.name}"
                               for alias in node.names]
    else:
      continue
    out.update(name for name in names if name in MODULES)
  return out


GRAPH = {module: _imports(path) for module, path in MODULES.items()}
# The Keras engine (Python 3.12/3.13, TF 2.21): its package.
KERAS_ENGINE = {m for m in MODULES if m.startswith("improve_nas.keras_engine")}


def test_the_engine_list_names_real_modules():
  assert ENGINE <= set(MODULES)


def test_the_algorithm_layer_imports_no_engine_module():
  engines = ENGINE | KERAS_ENGINE
  offenders = {module: sorted(GRAPH[module] & engines)
               for module in MODULES
               if module.startswith("improve_nas") and module not in engines
               and GRAPH[module] & engines}
  assert not offenders


def test_neither_engine_imports_the_other():
  assert KERAS_ENGINE
  offenders = {module: sorted(GRAPH[module] & ENGINE)
               for module in KERAS_ENGINE if GRAPH[module] & ENGINE}
  offenders.update({module: sorted(GRAPH[module] & KERAS_ENGINE)
                    for module in ENGINE if GRAPH[module] & KERAS_ENGINE})
  assert not offenders


def test_no_module_imports_one_that_imports_it_back():
  cycles = []
  state = {}

  def visit(module, path):
    state[module] = "open"
    for target in sorted(GRAPH[module]):
      if state.get(target) == "open":
        cycles.append(path[path.index(target):] + [target])
      elif target not in state:
        visit(target, path + [target])
    state[module] = "done"

  for module in sorted(GRAPH):
    if module not in state:
      visit(module, [module])
  assert not cycles


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
  with open(MODULES[module]) as f:
    assert sum(1 for _ in f) <= MAX_LINES


_ALGORITHM_ONLY = """
import sys
import improve_nas
from improve_nas import (config, configs, dataset_facts, distillation,
                         iteration, lock, memory, mirrored, model_dir,
                         optimizers, proposals, records, report, stopping,
                         study, study_results, tf_config, verbosity)
from improve_nas.configs import demo, paper
from improve_nas.data import datasets, input as input_lib
from improve_nas.nasnet import arch, counting, tower
demo.get_config()
paper.get_config("cifar10,w_akd")
# What a config file goes through before a search: validation and the
# dataset's facts (the embedded digits) and one tower's size.
c = config.prepared(demo.get_config())
facts = dataset_facts.DatasetFacts.load(c)
assert facts.params(arch.ArchSpec.parse("1@24")) > 0
proposals.make_proposer(c, facts.params).check_first_fits()
loaded = sorted(m for m in sys.modules
                if m.split(".")[0] in ("adanet", "tensorflow_estimator")
                or m.startswith("tensorflow.estimator"))
print(loaded)
# The engine comes with its first use.
improve_nas.make_estimator
print("adanet" in sys.modules)
"""


def test_the_algorithm_loads_neither_adanet_nor_tf_estimator():
  proc = subprocess.run([sys.executable, "-c", _ALGORITHM_ONLY],
                        capture_output=True, text=True, cwd=ROOT,
                        env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-2:] == ["[]", "True"]
