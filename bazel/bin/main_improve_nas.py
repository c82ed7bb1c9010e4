"""`bazel run //:improve-nas`: the console script of the same name."""

from trainer.main import run

run()
