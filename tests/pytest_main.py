"""Runs pytest on the test files given as arguments: the `main` of the
py_test rules in tests/BUILD (`bazel test //tests/...`)."""

import os
import sys

import pytest

if __name__ == "__main__":
  # Bazel gives each test a private writable folder; pytest's temporary
  # paths and cache go there, not to the read-only runfiles.
  tmp = os.environ.get("TEST_TMPDIR")
  extra = ["-p", "no:cacheprovider"]
  if tmp:
    extra.append(f"--basetemp={os.path.join(tmp, 'pytest')}")
  sys.exit(pytest.main(["-q", *extra, *sys.argv[1:]]))
