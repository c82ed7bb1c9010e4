"""`AdaNasEstimator`: adanet.Estimator with what AdaNAS needs of it.

Every adapter of adanet 0.9.0's private phases lives here, and what a
search needs to know after an iteration comes out through public methods:
the candidates proposed (`candidates`), their selection losses
(`selection_losses`), which one was chosen (`chosen`), whether every new
candidate diverged (`diverged`) and the mixture weights (`mixture_weights`).
"""

from __future__ import annotations

import importlib.metadata
from typing import List, Optional

import numpy as np
import tensorflow as tf

from improve_nas import compat
from improve_nas import growth
from improve_nas import one_pass
from improve_nas import readiness
from improve_nas import records as records_lib
from improve_nas.builder import CandidateGenerator
from improve_nas.compat import adanet
from improve_nas.errors import ConfigError, SearchDiverged
from improve_nas.model_dir import newest_iteration
from improve_nas.proposals import Candidate
from improve_nas.tf_config import PLACEMENTS

__all__ = ["AdaNasEstimator", "RecordingEvaluator", "SUPPORTED_ADANET",
           "check_adanet_version", "placement_strategy"]

# The adanet whose private API the adapters below and compat.py rely on.
SUPPORTED_ADANET = "0.9.0"


def check_adanet_version(installed: Optional[str] = None) -> None:
  """Raises ConfigError unless the installed adanet is SUPPORTED_ADANET."""
  installed = installed or importlib.metadata.version("adanet")
  if installed != SUPPORTED_ADANET:
    raise ConfigError(
        f"adanet {installed} is installed, but improve_nas supports adanet "
        f"{SUPPORTED_ADANET} only (it adapts that version's private API); "
        f"run: pip install --no-deps adanet=={SUPPORTED_ADANET}")


class RecordingEvaluator(adanet.Evaluator):
  """adanet's Evaluator that always grows the ensemble, keeps the last values
  it computed, and never selects a diverged candidate.

  `last_values[k]` is the selection loss of candidate ensemble k (index 0 is
  the previous ensemble from the second iteration on). The best new
  candidate is selected (the paper's AdaNAS always grows; we do here what
  adanet's `force_grow` would, because adanet then skips evaluation when one
  new candidate is left, so a diverged one would be taken). A NaN or
  infinite loss counts as missing. When every new candidate of an iteration
  after the first has diverged, the previous ensemble (index 0) is selected
  and `diverged` is True; at the first iteration there is nothing to fall
  back to and `SearchDiverged` is raised.
  """

  def __init__(self, input_fn, steps=None):
    super().__init__(input_fn=input_fn, steps=steps)
    self.last_values: List[float] = []
    self.diverged = False
    self._iteration = 0

  def evaluate(self, sess, ensemble_metrics):
    self.record(super().evaluate(sess, ensemble_metrics),
                newest_iteration(v.op.name for v in sess.graph.get_collection(
                    tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)))
    return self.last_values

  def record(self, values, iteration: int) -> None:
    """Keeps the selection losses `values` of `iteration`'s candidates."""
    self._iteration = iteration
    self.last_values = [float(v) if np.isfinite(v) else float("nan")
                        for v in values]

  def choose(self, values, iteration: int) -> int:
    """Records `values` and returns the index of the candidate to select
    (see `objective_fn`)."""
    self.record(values, iteration)
    return self.objective_fn(self.last_values)

  @property
  def objective_fn(self):
    def best(values):
      first_new = 1 if self._iteration else 0
      new = np.asarray(values[first_new:], dtype=np.float64)
      self.diverged = bool(np.all(np.isnan(new)))
      if not self.diverged:
        return first_new + int(np.nanargmin(new))
      if not self._iteration:  # the search words the message
        raise SearchDiverged("every candidate of iteration 1 diverged")
      return 0  # the previous ensemble: nothing new is added
    return best


def placement_strategy(name: str):
  """adanet's placement strategy for config.placement (None: replication,
  adanet's default; "round_robin" spreads candidates over workers)."""
  if name == "replication":
    return None
  if name == "round_robin":
    return adanet.distributed.RoundRobinStrategy()
  raise ConfigError(f"config.placement={name!r}: use one of "
                    f"{', '.join(PLACEMENTS)}")


class AdaNasEstimator(adanet.Estimator):
  """adanet.Estimator for a `CandidateGenerator`, one ensembler and a
  `RecordingEvaluator` (see estimator.make_estimator).

  Raises:
    ConfigError: the installed adanet is not the supported one.
  """

  def __init__(self, *, subnetwork_generator: CandidateGenerator,
               ensemblers, evaluator: RecordingEvaluator, **kwargs):
    check_adanet_version()
    compat.install_lazy_report_store()  # building a search writes nothing
    super().__init__(subnetwork_generator=subnetwork_generator,
                     ensemblers=ensemblers, evaluator=evaluator, **kwargs)
    self._generator = subnetwork_generator
    self._ensembler_name = ensemblers[0].name
    self._recorder = evaluator
    # (input_fn, checkpoint) -> (best index, architecture files) of the
    # last candidate evaluation; see _execute_candidate_evaluation_phase.
    self._last_selection = {}
    self._collecting = None
    self.candidate_evaluations = 0  # selection phases actually run
    self._graphs_written = set()  # iterations whose graph TensorBoard has
    growth.graphs_from_saver_hook_only(self.model_dir)
    compat.install_subnetwork_context()
    compat.nan_candidates_lose(self._iteration_builder)
    if self.config.train_distribute is not None:
      compat.install_replica_dispatchers()
      compat.install_distributed_summary_op()
      compat.mirrored_step_counters(self._iteration_builder)

  # adanet's phases, adapted.

  def _execute_candidate_evaluation_phase(self, evaluator_input_fn,
                                          export_best_architecture,
                                          checkpoint_path, hooks):
    """adanet runs this phase (build the iteration's whole graph in EVAL
    mode, run every candidate ensemble over the Evaluator's input, pick the
    best) in `evaluate`, to know which ensemble to evaluate, and again in
    the next `train`'s bookkeeping, on the same checkpoint. Here its result
    for an (input_fn, checkpoint) pair is kept, with the architecture file
    it would write, and the second call only writes that file. The
    Evaluator's input is the same unshuffled split both times."""
    key = (evaluator_input_fn, checkpoint_path)
    if key not in self._last_selection:
      self._collecting = []
      try:
        index = super()._execute_candidate_evaluation_phase(
            evaluator_input_fn, export_best_architecture=True,
            checkpoint_path=checkpoint_path, hooks=hooks)
      finally:
        exports, self._collecting = self._collecting, None
      self.candidate_evaluations += 1
      self._last_selection = {key: (index, exports)}
    index, exports = self._last_selection[key]
    if export_best_architecture:
      for args in exports:
        super()._save_architecture(*args)
    return index

  def _compute_best_ensemble_index(self, checkpoint_path, hooks):
    """adanet exports by running the selection of the checkpoint's
    iteration again: its whole graph in EVAL mode over the selection split
    (about 40% of the demo's `--export_only`). A search's record of that
    iteration at that step already names the candidate the same selection
    chose, so its index is taken from there. Without such a record (an
    Estimator used outside run_search, an iteration whose every candidate
    diverged, a checkpoint the records do not reach) adanet selects."""
    if checkpoint_path and not self._replay_config:
      index = self._recorded_best_index(checkpoint_path)
      if index is not None:
        return index
    return super()._compute_best_ensemble_index(checkpoint_path, hooks)

  def _recorded_best_index(self, checkpoint_path) -> Optional[int]:
    try:
      saved = records_lib.load_search(self.model_dir)
    except records_lib.DamagedFile:
      return None
    if not saved:
      return None
    iteration = self._checkpoint_iteration_number(checkpoint_path)
    step = tf.train.load_variable(checkpoint_path,
                                  tf.compat.v1.GraphKeys.GLOBAL_STEP)
    for record in saved["records"]:
      names = [x.name for x in record.candidates]
      if (record.iteration, record.global_step) == (iteration, step) and \
          record.chosen in names:
        # adanet's candidates: the previous ensemble first, from the second
        # iteration on, then the new ones in the records' order.
        return (1 if iteration else 0) + names.index(record.chosen)
    return None

  def _save_architecture(self, filename, architecture, checkpoint_path):
    if self._collecting is not None:
      self._collecting.append((filename, architecture, checkpoint_path))
    else:
      super()._save_architecture(filename, architecture, checkpoint_path)

  def _execute_graph_growing_phase(self, train_input_fn, train_hooks,
                                   checkpoint_path):
    """adanet builds the next iteration's training graph here, in a
    temporary session, only to write `increment.ckpt-N`; it is written
    here from the checkpoint alone, and the next training session
    initialises what is new (growth.py)."""
    del train_input_fn, train_hooks
    iteration = self._checkpoint_iteration_number(checkpoint_path)
    # What building the next graph would do first: end the search when no
    # candidate of the next iteration fits the budget (SearchEnded).
    architecture = self._read_architecture(
        self._architecture_filename(iteration))
    self._generator.check_next_fits(
        [name for _, names in architecture.subnetworks_grouped_by_iteration
         for name in names],
        iteration + 1)
    growth.write_increment_checkpoint(self.model_dir, checkpoint_path,
                                      iteration + 1,
                                      self.config.keep_checkpoint_max)

  def _create_estimator_spec(self, current_iteration, mode,
                             iteration_number_tensor, previous_iteration_vars,
                             is_growing_phase, evaluation_name):
    """adanet's spec, with readiness checks built once (readiness.py); in
    training, with the Saver that grows the graph from an increment
    checkpoint and the checkpoint hook of growth.py."""
    spec = super()._create_estimator_spec(
        current_iteration, mode, iteration_number_tensor,
        previous_iteration_vars, is_growing_phase, evaluation_name)
    config = self.config
    if is_growing_phase:
      return spec
    if config.train_distribute is None and config.eval_distribute is None:
      hooks = {tf.estimator.ModeKeys.TRAIN: "training_hooks",
               tf.estimator.ModeKeys.EVAL: "evaluation_hooks"}.get(mode)
      if hooks:
        spec = spec._replace(**{hooks: [*getattr(spec, hooks),
                                        readiness.ReadinessHook()]})
    if mode != tf.estimator.ModeKeys.TRAIN:
      return spec

    def saving(_=None):
      """The scaffold and the checkpoint hook. Under a tf.distribute
      strategy (mirrored), made once for all replicas, in cross-replica
      context, where a Saver can be built."""
      checkpoint = tf.train.latest_checkpoint(config.model_dir)
      scaffold = spec.scaffold
      saver = growth.growing_saver(checkpoint, current_iteration.number,
                                   config)
      if saver is not None:
        scaffold = tf.compat.v1.train.Scaffold(
            summary_op=scaffold.summary_op, saver=saver,
            local_init_op=scaffold.local_init_op)
      hook = None
      if config.save_checkpoints_secs or config.save_checkpoints_steps:
        # The growing Saver, or (None) the one the Estimator puts in the
        # graph's SAVERS collection: not the scaffold's, which a strategy
        # never finalizes (the Estimator finalizes a combined copy).
        hook = growth.SaverHook(
            config.model_dir, save_secs=config.save_checkpoints_secs,
            save_steps=config.save_checkpoints_steps, saver=saver,
            save_graph_def=False,
            write_graph=current_iteration.number not in self._graphs_written)
        self._graphs_written.add(current_iteration.number)
      return scaffold, hook

    if tf.distribute.in_cross_replica_context():
      scaffold, hook = saving()
    else:
      scaffold, hook = tf.distribute.get_replica_context().merge_call(saving)
    hooks = [*spec.training_chief_hooks, *([hook] if hook else [])]
    return spec._replace(scaffold=scaffold, training_chief_hooks=hooks)

  def prepare_next_iteration(self, input_fn, hooks) -> None:
    """adanet's bookkeeping between iterations, on the chief: selects the
    best candidate of the finished iteration in the latest checkpoint and
    grows the graph and the checkpoint to the next iteration.

    adanet's `train` does this only after building the finished
    iteration's training graph once more and opening a session on it, which
    stops before its first step: a whole graph build for nothing. Called
    first, the next `train` starts with the new iteration."""
    if not self.config.is_chief:
      return
    from adanet.distributed.devices import monkey_patch_default_variable_placement_strategy  # pylint: disable=g-import-not-at-top
    checkpoint = tf.train.latest_checkpoint(self.model_dir)
    iteration = self._checkpoint_iteration_number(checkpoint)
    with monkey_patch_default_variable_placement_strategy(), \
        self._force_replication_strategy():
      self._execute_bookkeeping_phase(input_fn, iteration,
                                      train_hooks=list(hooks),
                                      checkpoint_path=checkpoint)

  def evaluate(self, input_fn, steps=None, hooks=None, checkpoint_path=None,
               name=None):
    """adanet's `evaluate`, with the candidate selection it needs first run
    in the same graph and session (one_pass.py) unless the selection of
    this checkpoint is known already; the metrics and the selection are
    the ones adanet's two graphs give."""
    checkpoint_path = checkpoint_path or tf.train.latest_checkpoint(
        self.model_dir)
    key = (self._evaluator.input_fn, checkpoint_path)
    if (not checkpoint_path or key in self._last_selection or
        self.config.eval_distribute is not None):
      return super().evaluate(input_fn, steps=steps, hooks=hooks,
                              checkpoint_path=checkpoint_path, name=name)
    plan = one_pass.Plan()
    iteration = self._checkpoint_iteration_number(checkpoint_path)
    select = one_pass.SelectFirst(
        plan, lambda values: self._recorder.choose(values, iteration),
        steps=self._evaluator.steps)
    temp_estimator = self._create_temp_estimator(
        config=self.config, checkpoint_path=checkpoint_path,
        evaluation_name=name, best_ensemble_index=plan, hooks=hooks)
    try:
      with compat.confusion_matrix_asserts_disabled():
        metrics = temp_estimator.evaluate(
            one_pass.combined_input_fn(plan, self._evaluator.input_fn,
                                       input_fn),
            steps=steps, hooks=[select, *(hooks or [])],
            checkpoint_path=checkpoint_path, name=name)
    except one_pass.NotCombinable:
      return super().evaluate(input_fn, steps=steps, hooks=hooks,
                              checkpoint_path=checkpoint_path, name=name)
    self.candidate_evaluations += 1
    self._last_selection = {key: (plan.chosen, [(
        self._architecture_filename(iteration),
        plan.architecture(plan.chosen), checkpoint_path)])}
    return metrics

  def evaluate_locally(self, *args, **kwargs):
    """`evaluate(*args, **kwargs)` in a local session on any task.

    With RoundRobinStrategy every candidate's variables are pinned to a
    parameter server, also in the evaluation graph, which a local session
    cannot place; adanet switches to replication for its own bookkeeping
    and exports, not for `evaluate`. We do the same here."""
    with self._force_replication_strategy():
      return self.evaluate(*args, **kwargs)

  # What the search reads after an iteration.

  def candidates(self, iteration: int) -> List[Candidate]:
    """The candidates iteration `iteration` trained (those that fit the
    budget), in adanet's order."""
    return list(self._generator.fitting.get(iteration, []))

  def forget_selection_losses(self) -> None:
    """Clears the selection losses (adanet does not evaluate a lone
    candidate, so a stale list would otherwise remain)."""
    self._recorder.last_values = []

  def selection_losses(self, iteration: int) -> List[Optional[float]]:
    """Each candidate's selection loss (NaN when it diverged; None when
    adanet did not evaluate a lone candidate)."""
    offset = 1 if iteration else 0  # the previous ensemble comes first
    values = list(self._recorder.last_values)
    wanted = len(self.candidates(iteration))
    if len(values) != offset + wanted:
      return [None] * wanted
    return values[offset:]

  def chosen(self, iteration: int, metrics) -> Candidate:
    """The candidate the evaluation `metrics` of `iteration` chose."""
    offset = 1 if iteration else 0
    index = int(metrics[f"best_ensemble_index_{iteration}"]) - offset
    return self.candidates(iteration)[index]

  @property
  def diverged(self) -> bool:
    """Whether every new candidate of the last selection diverged."""
    return self._recorder.diverged

  def mark_diverged(self) -> None:
    self._recorder.diverged = True

  def mixture_weights(self, iteration: int, chosen: Candidate) -> List[float]:
    """The mixture weights of the ensemble `chosen` completed at
    `iteration`, one per member, from the latest checkpoint."""
    reader = tf.train.load_checkpoint(self.model_dir)
    # adanet's scope of that candidate ensemble (GrowStrategy).
    prefix = (f"adanet/iteration_{iteration}/ensemble_t{iteration}_"
              f"{chosen.name}_grow_{self._ensembler_name}/")
    names = [n for n in reader.get_variable_to_shape_map()
             if n.startswith(prefix) and n.endswith("logits/mixture_weight")]
    # weighted_subnetwork_0, _1, ...: sort by the member's index.
    names.sort(key=lambda n: int(n.split("weighted_subnetwork_")[1]
                                 .split("/")[0]))
    return [round(float(reader.get_tensor(n)), 6) for n in names]
