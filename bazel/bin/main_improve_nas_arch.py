"""`bazel run //:improve-nas-arch`: the console script of the same name."""

from trainer.arch import run

run()
