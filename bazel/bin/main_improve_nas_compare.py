"""`bazel run //:improve-nas-compare`: the console script of the same name."""

from trainer.compare import run

run()
