"""`bazel run //:improve-nas-cluster`: the console script of the same name."""

from trainer.cluster import run

run()
