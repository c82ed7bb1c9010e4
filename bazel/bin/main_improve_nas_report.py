"""`bazel run //:improve-nas-report`: the console script of the same name."""

from trainer.report import run

run()
