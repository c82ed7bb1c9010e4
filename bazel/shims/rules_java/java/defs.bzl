"""@rules_java//java:defs.bzl as Bazel 4.2's own tools load it: each rule is
the native one of the same name (see bazel/shims/rules_cc/cc/defs.bzl for
why). improve_nas builds no Java; Bazel loads these for its registered JDK
toolchains.
"""

def java_binary(**kwargs):
    native.java_binary(**kwargs)

def java_import(**kwargs):
    native.java_import(**kwargs)

def java_library(**kwargs):
    native.java_library(**kwargs)

def java_runtime(**kwargs):
    native.java_runtime(**kwargs)

def java_toolchain(**kwargs):
    native.java_toolchain(**kwargs)
