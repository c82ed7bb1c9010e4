"""improve-nas-report: the per-iteration table and report files of a search.

    improve-nas-report --model_dir=runs/demo

Prints the table and writes MODEL_DIR/report/report.json, report.csv,
architectures.png and progress.png. Works while the search is running.
"""

from __future__ import annotations

from absl import app
from absl import flags
from absl import logging

from trainer import cli
from improve_nas.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The model_dir of a search.")
flags.DEFINE_string("out_dir", None,
                    "Where the report files go (default MODEL_DIR/report).")


def _fail(message: str) -> None:
  cli.fail("improve-nas-report", message)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; use --model_dir=DIR")
  if not FLAGS.model_dir:
    _fail("--model_dir is required: the model_dir of a search")
  from improve_nas import report  # pylint: disable=g-import-not-at-top
  if FLAGS.verbosity < 1:
    logging.set_verbosity(logging.WARNING)  # matplotlib's font-cache notice
  try:
    result = report.write_report(FLAGS.model_dir, FLAGS.out_dir)
  except ConfigError as e:
    _fail(str(e))
  if result["note"]:
    print(f"improve-nas-report: {result['note']}")
  print(result["table"])
  print(f"\n{result['detail']}")
  for path in result["files"]:
    print(f"wrote {path}")


def run():
  """Console-script entry point (improve-nas-report)."""
  app.run(main, flags_parser=cli.flags_parser("improve-nas-report"))


if __name__ == "__main__":
  run()
