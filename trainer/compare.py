"""improve-nas-compare: run arms of searches over seeds and compare them.

    improve-nas-compare --study=demo --out=runs/compare-demo
    improve-nas-compare --study=demo --set=dataset=mnist --set=image_size=28 \\
        --out=runs/compare-mnist            # the same study on other data
    improve-nas-compare --arm='demo=demo' \\
        --arm='nokd=demo knowledge_distillation=none' \\
        --arm='tower=demo tower_of=demo schedule=total' --seeds=1,2 \\
        --out=runs/mine --parallel=2
    improve-nas-compare --study=paper:cifar10 --quick --out=runs/paper-smoke

Each arm runs as a separate search per seed under OUT/runs/ARM/seed_S; the
command prints which run is going with an ETA, then a table (per arm: each
seed's final test accuracy, mean +- std, parameters, steps per member,
candidate steps, training multiply-adds, wall time) and writes
OUT/compare.json, compare.csv, two plots and OUT/hparams for TensorBoard's
HParams dashboard. Running the same command again continues the study.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from absl import app
from absl import flags
from absl import logging

from trainer import cli
from improve_nas.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("study", None,
                    "A built-in study: demo (the demo search against one "
                    "tower of its size and the paper's ablations) or "
                    "paper:DATASET (Table 1's rows). Without it, --arm "
                    "defines the arms.")
flags.DEFINE_multi_string("arm", [],
                          "An arm: 'NAME=CONFIG [FIELD=VALUE ...]' (CONFIG a "
                          "shipped name or a config file); tower_of=ARM and "
                          "schedule=member|total make it one tower sized "
                          "after ARM's final ensemble. Repeat for more arms; "
                          "added to --study's arms.")
flags.DEFINE_multi_string("set", [],
                          "FIELD=VALUE set in every arm first (e.g. "
                          "--set=dataset=mnist --set=image_size=28).")
flags.DEFINE_list("seeds", ["1", "2", "3"], "The seeds every arm runs with.")
flags.DEFINE_string("out", None, "The study directory (runs, results).")
flags.DEFINE_integer("parallel", 1, "Searches run at once.")
flags.DEFINE_bool("quick", False,
                  "A smoke run: every arm with config.quick=True (a few "
                  "steps of tiny towers on tiny images).")


def _fail(message: str) -> None:
  cli.fail("improve-nas-compare", message)


def _settings():
  from improve_nas import study  # pylint: disable=g-import-not-at-top
  settings = {}
  for item in FLAGS.set:
    field, sep, value = item.partition("=")
    if not sep or not field:
      raise ConfigError(f"--set={item!r}: expected FIELD=VALUE, e.g. "
                        "--set=dataset=mnist")
    settings[field] = value
  if FLAGS.quick:
    settings["quick"] = "True"
  study.load_config("demo", settings)  # every field must exist
  return settings


def _study():
  from improve_nas import study  # pylint: disable=g-import-not-at-top
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    raise ConfigError(f"--seeds={','.join(FLAGS.seeds)}: give integers, e.g. "
                      "--seeds=1,2,3") from None
  settings = _settings()
  arms = [study.parse_arm(a) for a in FLAGS.arm]
  if FLAGS.study:
    built = study.builtin_study(FLAGS.study, seeds, settings)
    return study.Study(built.name, built.arms + arms, seeds, settings)
  return study.Study("custom", arms, seeds, settings)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value")
  if not FLAGS.out:
    _fail("--out is required: the directory of the study, e.g. "
          "--out=runs/compare-demo")
  # pylint: disable=g-import-not-at-top
  from improve_nas import compare
  from improve_nas.verbosity import set_tf_verbosity
  # pylint: enable=g-import-not-at-top
  set_tf_verbosity(False)
  if FLAGS.verbosity < 1:  # TFDS's and matplotlib's INFO notices
    logging.set_verbosity(logging.WARNING)
  try:
    study = _study()
    runner = compare.StudyRunner(
        study, FLAGS.out, FLAGS.parallel,
        on_line=lambda line: print(line, flush=True))
    runner.prepare()
  except ConfigError as e:
    _fail(str(e))
  print(f"improve-nas-compare: study {study.name!r}, {len(study.arms)} arms x "
        f"{len(study.seeds)} seeds, {FLAGS.parallel} at a time, in "
        f"{FLAGS.out}", flush=True)

  def stop(signum, frame):
    del frame
    print(f"improve-nas-compare: stopping (signal {signum}); the running "
          "searches save a checkpoint", flush=True)
    runner.stop()

  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, stop)
  start = time.time()
  try:
    results = runner.run()
  except ConfigError as e:
    _fail(str(e))
  summaries = compare.summarize(study, results)
  print()
  print(compare.format_table(summaries))
  files = compare.write_outputs(FLAGS.out, study, summaries)
  print(f"\n{time.time() - start:.0f}s; wrote "
        f"{', '.join(os.path.relpath(f, FLAGS.out) for f in files)} in "
        f"{FLAGS.out}")
  if runner.stopped:
    print("improve-nas-compare: stopped; run the same command to continue",
          file=sys.stderr)
    sys.exit(130)
  if any(r.state == "failed" for r in results):
    sys.exit(1)


def run():
  """Console-script entry point (improve-nas-compare)."""
  app.run(main, flags_parser=cli.flags_parser("improve-nas-compare"))


if __name__ == "__main__":
  run()
