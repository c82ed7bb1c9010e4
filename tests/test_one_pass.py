"""The test evaluation selects the iteration's best candidate in its own
graph and session (improve_nas/one_pass.py), with the results adanet's
separate selection phase and evaluation give."""

import numpy as np
import tensorflow as tf

from improve_nas import records as records_lib
from improve_nas import search
from improve_nas.one_pass import batch_mean

from test_search import tiny_config


def test_batch_mean_is_tensorflows_running_mean():
  rng = np.random.RandomState(0)
  batches = rng.uniform(0, 3, size=(37, 3)).astype(np.float32)
  batches[5, 2] = np.nan
  with tf.Graph().as_default():
    value = tf.compat.v1.placeholder(tf.float32, [])
    means = [tf.compat.v1.metrics.mean(value) for _ in range(3)]
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.local_variables_initializer())
      for row in batches:
        for column, (_, update) in enumerate(means):
          session.run(update, {value: row[column]})
      expected = session.run([mean for mean, _ in means])
  got = batch_mean(list(batches), 3)
  np.testing.assert_array_equal(np.float32(got), np.float32(expected))
  assert np.isnan(got[2])
  assert batch_mean([], 2) == [0.0, 0.0]  # as div_no_nan


def _count_iteration_graphs(estimator):
  built = []
  create = estimator._create_iteration

  def counted(*args, **kwargs):
    built.append(kwargs.get("mode", args[2] if len(args) > 2 else None))
    return create(*args, **kwargs)

  estimator._create_iteration = counted
  return built


def test_one_graph_gives_adanets_selection_and_metrics(tmp_path):
  c = tiny_config(generator="dynamic", max_iterations=1)
  model_dir = str(tmp_path / "run")
  search.run_search(c, model_dir)
  checkpoint = tf.train.latest_checkpoint(model_dir)

  one = search.build_search(c, model_dir)
  built = _count_iteration_graphs(one.estimator)
  metrics = one.estimator.evaluate_locally(one.input_fns.eval,
                                           steps=c.eval_steps, name="again")
  assert len(built) == 1  # one graph for the selection and the test
  assert one.estimator.candidate_evaluations == 1

  two = search.build_search(c, model_dir)
  estimator = two.estimator
  built = _count_iteration_graphs(estimator)
  # adanet's own way: its selection phase, then `evaluate` on its result.
  index = estimator._execute_candidate_evaluation_phase(
      estimator._evaluator.input_fn, export_best_architecture=False,
      checkpoint_path=checkpoint, hooks=[])
  expected = estimator.evaluate_locally(two.input_fns.eval,
                                        steps=c.eval_steps, name="again2")
  assert len(built) == 2

  assert len(one.estimator.candidates(0)) == 2
  assert one.estimator.selection_losses(0) == estimator.selection_losses(0)
  assert all(np.isfinite(one.estimator.selection_losses(0)))
  assert metrics["best_ensemble_index_0"] == index
  assert set(metrics) == set(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(metrics[name], value, err_msg=name)
  # What the next iteration's bookkeeping and the export read is cached.
  assert one.estimator._execute_candidate_evaluation_phase(
      one.estimator._evaluator.input_fn, export_best_architecture=False,
      checkpoint_path=checkpoint, hooks=[]) == index
  assert one.estimator.candidate_evaluations == 1

  # The export takes the chosen ensemble from the search's record of the
  # checkpoint's iteration (here the first: no previous ensemble before
  # the candidates), with no selection and no graph built.
  four = search.build_search(c, model_dir)
  built = _count_iteration_graphs(four.estimator)
  assert four.estimator._compute_best_ensemble_index(checkpoint, []) == index
  assert built == [] and four.estimator.candidate_evaluations == 0
  # It is the record that names it: one claiming the other candidate names
  # that one's index; a record of another step is not used (adanet selects).
  saved = records_lib.load_search(model_dir)
  record = saved["records"][0]
  record.chosen = [x.name for x in record.candidates][1 - index]
  records_lib.write_records(model_dir, saved["records"], saved["ended"])
  assert search.build_search(c, model_dir).estimator \
      ._compute_best_ensemble_index(checkpoint, []) == 1 - index
  record.global_step += 1
  records_lib.write_records(model_dir, saved["records"], saved["ended"])

  # An input_fn whose input cannot share the selection's iterator (here
  # features and labels, not a tf.data.Dataset) gets adanet's two graphs,
  # when no record names the selection (the one above is of another step).
  three = search.build_search(c, model_dir)
  built = _count_iteration_graphs(three.estimator)

  def tensors_input_fn():
    dataset = three.input_fns.eval()
    return tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()

  fallback = three.estimator.evaluate_locally(
      tensors_input_fn, steps=c.eval_steps, name="tensors")
  assert len(built) == 2
  assert three.estimator.selection_losses(0) == estimator.selection_losses(0)
  for name, value in expected.items():
    np.testing.assert_array_equal(fallback[name], value, err_msg=name)
  assert three.estimator.candidate_evaluations == 1
