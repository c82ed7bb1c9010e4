"""The README's "Inside your own TensorFlow pipeline" snippet, run as is."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # train_and_evaluate's extra evaluations: ~160 s
def test_readme_pipeline_snippet_runs(tmp_path, monkeypatch):
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  section = readme.split("## Inside your own TensorFlow pipeline", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  model_dir = str(tmp_path / "my_run")
  assert '"/tmp/my_run"' in code
  code = code.replace('"/tmp/my_run"', repr(model_dir))
  code = code.replace("print(predictions", "result = (predictions")
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  probabilities = namespace["result"]
  assert probabilities.shape == (10,)
  assert abs(float(probabilities.sum()) - 1.0) < 1e-4
  estimator = namespace["estimator"]
  assert estimator.latest_checkpoint().endswith("-20")
  assert os.path.isdir(os.path.join(model_dir, "eval"))
