"""@rules_cc//cc:defs.bzl as Bazel 4.2's own tools load it: each rule is the
native one of the same name.

Bazel 4.2 loads @rules_cc while it resolves toolchains, even for Python
targets, and would download a pinned rules_cc archive for it. Debian's
bazel-rules-cc package is newer than Bazel 4.2 understands (it loads
`use_cpp_toolchain`, which 4.2's @bazel_tools lacks), so the workspace maps
@rules_cc here instead. improve_nas builds no C++.
"""

def cc_binary(**kwargs):
    native.cc_binary(**kwargs)

def cc_import(**kwargs):
    native.cc_import(**kwargs)

def cc_library(**kwargs):
    native.cc_library(**kwargs)

def cc_proto_library(**kwargs):
    native.cc_proto_library(**kwargs)

def cc_test(**kwargs):
    native.cc_test(**kwargs)

def cc_toolchain(**kwargs):
    native.cc_toolchain(**kwargs)

def cc_toolchain_suite(**kwargs):
    native.cc_toolchain_suite(**kwargs)

def objc_library(**kwargs):
    native.objc_library(**kwargs)
