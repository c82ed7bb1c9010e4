"""A Python toolchain whose interpreter is the workspace's .venv.

The project's dependencies (TensorFlow 2.15, adanet 0.9.0 without its own
pins, ...) are installed by `make install` into .venv; Bazel's py_binary and
py_test run with that interpreter, so they import them from there. The rule
is local: it reads the workspace path and fetches nothing.
"""

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "python3",
    interpreter_path = "{interpreter}",
    python_version = "PY3",
    stub_shebang = "#!{interpreter}",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":python3",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _venv_python_impl(ctx):
    root = ctx.path(Label("@//:WORKSPACE")).dirname
    interpreter = root.get_child(ctx.attr.venv).get_child("bin").get_child("python")
    if not interpreter.exists:
        fail("%s is missing: run `make install` first (it creates the virtual " % interpreter +
             "environment Bazel's Python rules run with)")
    ctx.file("BUILD.bazel", _BUILD.format(interpreter = str(interpreter)))

venv_python = repository_rule(
    implementation = _venv_python_impl,
    attrs = {"venv": attr.string(default = ".venv")},
    local = True,
    doc = "The workspace's virtual environment as a Python 3 toolchain.",
)
