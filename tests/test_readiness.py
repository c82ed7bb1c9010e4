"""The readiness checks of improve_nas/readiness.py report what TensorFlow's
own report, from one flag per variable."""

import pytest
import tensorflow as tf

from improve_nas import readiness
from improve_nas.restored_variables import restored_variables


def _flags(graph):
  return sum(op.type == "VarIsInitializedOp" for op in graph.get_operations())


def test_the_shared_checks_report_what_tensorflows_report():
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.get_variable("a", [2], use_resource=True)
    with restored_variables():  # no initializer, no flag of their own
      tf.keras.layers.Dense(3, name="restored")(tf.zeros([1, 2]))
    tf.compat.v1.get_variable("b", [1], use_resource=True)
    tf.compat.v1.get_variable(
        "local", [1], use_resource=True,
        collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES])
    variables = (tf.compat.v1.global_variables() +
                 tf.compat.v1.local_variables())
    assert len(variables) == 5
    # What tf.compat.v1.train.Scaffold's defaults build: 2 flags per
    # variable (the local one is in one check only).
    flags = _flags(graph)
    want = [tf.compat.v1.report_uninitialized_variables(),
            tf.compat.v1.report_uninitialized_variables(
                tf.compat.v1.global_variables())]
    assert _flags(graph) - flags == 9
    global_init = tf.compat.v1.global_variables_initializer()
    local_init = tf.compat.v1.local_variables_initializer()
    restore = [v.assign(tf.zeros(v.shape)) for v in variables
               if "restored" in v.name]
    flags = _flags(graph)
    lean = readiness.readiness_reports()
    # New flags only for the two restored variables.
    assert _flags(graph) - flags == 2
    with tf.compat.v1.Session() as session:
      def reports():
        got = session.run(lean)
        assert [list(g) for g in got] == [list(w) for w in session.run(want)]
        return [sorted(n.decode() for n in names) for names in got]

      everything = ["a", "b", "local", "restored/bias", "restored/kernel"]
      assert reports() == [everything, ["a", "b", "restored/bias",
                                        "restored/kernel"]]
      session.run(global_init)
      # The restored variables' initializer is a no-op: they stay
      # uninitialized, and the checks name them.
      assert reports() == [["local", "restored/bias", "restored/kernel"],
                           ["restored/bias", "restored/kernel"]]
      session.run(restore)
      assert reports() == [["local"], []]
      session.run(local_init)
      assert reports() == [[], []]


def test_a_session_takes_the_hooks_checks(tmp_path):
  with tf.Graph().as_default() as graph:
    with restored_variables():
      tf.keras.layers.Dense(3, name="restored")(tf.zeros([1, 2]))
    tf.compat.v1.train.get_or_create_global_step()
    scaffold = tf.compat.v1.train.Scaffold()
    # No checkpoint to restore: the restored variables stay uninitialized
    # and the session refuses to start, naming them.
    creator = tf.compat.v1.train.ChiefSessionCreator(
        scaffold=scaffold, checkpoint_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="restored/kernel"):
      tf.compat.v1.train.MonitoredSession(
          creator, hooks=[readiness.ReadinessHook()])
    [ready] = graph.get_collection(tf.compat.v1.GraphKeys.READY_OP)
    assert scaffold.ready_op is ready
    # One flag per variable: 2 restored ones without their own, and the
    # global step's.
    assert _flags(graph) == 3


def test_checks_already_in_the_graph_are_kept():
  with tf.Graph().as_default() as graph:
    tf.compat.v1.get_variable("a", [2], use_resource=True)
    mine = tf.constant(["mine"])
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.READY_OP, mine)
    readiness.ReadinessHook().begin()
    assert graph.get_collection(tf.compat.v1.GraphKeys.READY_OP) == [mine]
    assert not graph.get_collection(
        tf.compat.v1.GraphKeys.READY_FOR_LOCAL_INIT_OP)
