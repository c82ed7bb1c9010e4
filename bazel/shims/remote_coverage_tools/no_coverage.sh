#!/bin/sh
echo "improve_nas: bazel coverage is not set up (no coverage tools offline)" >&2
exit 1
