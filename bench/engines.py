"""The demo search on both engines, seed by seed, on one machine.

    python bench/engines.py [--seeds=1,2,3] [--engines=adanet,keras]

Runs `improve-nas --config=demo --config.seed=S` of each engine from its own
environment (.venv: Python 3.11, adanet; .venv-keras: Python 3.12, Keras 3),
one after the other, each in a fresh model_dir, and prints JSON: per run
the wall time of the command (imports, search, export) and the final
ensemble's test accuracy; per engine their mean and spread; and the Keras
engine's mean time as a share of the adanet engine's.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {"adanet": [os.path.join(ROOT, ".venv", "bin", "improve-nas")],
            "keras": [os.path.join(ROOT, ".venv-keras", "bin", "improve-nas"),
                      "--engine=keras"]}


def run(engine: str, seed: int, folder: str) -> dict:
  model_dir = os.path.join(folder, f"{engine}_{seed}")
  start = time.time()
  proc = subprocess.run(
      COMMANDS[engine] + ["--config=demo", f"--config.seed={seed}",
                          f"--model_dir={model_dir}", "--progress_secs=0"],
      capture_output=True, text=True, cwd=ROOT)
  wall = time.time() - start
  if proc.returncode:
    raise SystemExit(f"{engine} seed {seed} failed:\n{proc.stderr[-3000:]}")
  with open(os.path.join(model_dir, "search.json")) as f:
    records = json.load(f)["iterations"]
  return {"engine": engine, "seed": seed, "wall_seconds": round(wall, 1),
          "test_accuracy": round(records[-1]["test_accuracy"], 4),
          "iteration_seconds": [r["seconds"] for r in records],
          "steps_per_second": [r["steps_per_second"] for r in records],
          "members": records[-1]["ensemble_archs"]}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", default="1,2,3")
  parser.add_argument("--engines", default="adanet,keras")
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  engines = args.engines.split(",")
  runs = []
  with tempfile.TemporaryDirectory() as folder:
    for seed in seeds:
      for engine in engines:
        runs.append(run(engine, seed, folder))
  out = {"cpus": os.cpu_count(), "runs": runs, "engines": {}}
  for engine in engines:
    mine = [r for r in runs if r["engine"] == engine]
    accuracies = [r["test_accuracy"] for r in mine]
    walls = [r["wall_seconds"] for r in mine]
    out["engines"][engine] = {
        "accuracy_mean": round(statistics.mean(accuracies), 4),
        "accuracy_std": round(statistics.pstdev(accuracies), 4),
        "accuracy_range": [min(accuracies), max(accuracies)],
        "wall_mean": round(statistics.mean(walls), 1)}
  if {"adanet", "keras"} <= set(engines):
    out["keras_time_share"] = round(out["engines"]["keras"]["wall_mean"] /
                                    out["engines"]["adanet"]["wall_mean"], 3)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
