"""improve-nas: run (or resume) an AdaNAS search from the command line.

With no flags it runs the offline demo search on the embedded digits dataset:

    improve-nas                       # = python -m trainer.main
    improve-nas --config=demo --config.max_iterations=2 --model_dir=runs/mine
    improve-nas --config=paper:cifar10,w_akd \
        --config.quick=True --config.data_dir=DIR --model_dir=runs/smoke
    improve-nas --model_dir=runs/mine --export_only   # SavedModel again

It prints a progress line every --progress_secs, a table at the end, and
exports the final ensemble to MODEL_DIR/export (--noexport skips it). Bad
flags or config values print one line and exit with status 2.
"""

from __future__ import annotations

import logging as logging_std
import sys
import threading
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from trainer import cli
from trainer import search_output
from improve_nas.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "runs/demo",
                    "Where checkpoints, summaries and search.json go. An "
                    "existing search there with the same config is resumed.")
flags.DEFINE_bool("overwrite", False,
                  "Delete model_dir first (after the config is validated).")
flags.DEFINE_bool("export", True,
                  "At the end, export the final ensemble as a SavedModel to "
                  "MODEL_DIR/export (raw uint8 images in, class ids and "
                  "probabilities out).")
flags.DEFINE_bool("export_only", False,
                  "Do not train: export the latest ensemble of an existing "
                  "--model_dir (with its saved config) and exit.")
flags.DEFINE_float("progress_secs", 10.0,
                   "Seconds between progress lines during training; 0 turns "
                   "them off.")
flags.DEFINE_enum("distribution", "none", ["none", "mirrored"],
                  "mirrored: split each training step over this machine's "
                  "GPUs (or --cpu_devices CPU devices) with MirroredStrategy; "
                  "config.batch_size is the global batch.")
flags.DEFINE_enum("engine", "adanet", ["adanet", "keras"],
                  "adanet: adanet 0.9 on tf.estimator (Python 3.11, TF 2.15; "
                  "clusters). keras: the Keras 3 engine (Python 3.12/3.13, "
                  "TF 2.21; one machine).")
flags.DEFINE_integer("cpu_devices", 0,
                     "With --distribution=mirrored: replicas on this many "
                     "logical CPU devices instead of the GPUs (0: the GPUs).")


def _fail(message: str) -> None:
  cli.fail("improve-nas", message)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value")
  if FLAGS.engine == "keras":
    from trainer import keras_main  # pylint: disable=g-import-not-at-top
    _quiet_storage_failures()
    keras_main.main(FLAGS, _fail)
    return
  import importlib.util  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("adanet") is None:
    _fail(f"the adanet engine needs adanet 0.9.0, which is not installed in "
          f"{sys.prefix} (it runs on Python 3.11 only: make install); on "
          f"Python {sys.version_info[0]}.{sys.version_info[1]} use "
          "--engine=keras")
  # pylint: disable=g-import-not-at-top
  from improve_nas import progress
  from improve_nas import search
  from improve_nas import tf_config
  from improve_nas import threads
  from improve_nas.verbosity import set_tf_verbosity
  import tensorflow_datasets as tfds
  # pylint: enable=g-import-not-at-top
  threads.configure()  # before TensorFlow's first operation
  verbose = FLAGS.verbosity >= 1
  set_tf_verbosity(verbose)
  if not verbose:  # adanet logs through absl at INFO.
    logging.set_verbosity(logging.WARNING)
  tfds.disable_progress_bar()
  _quiet_storage_failures()
  c = search_output.loaded_config(FLAGS, _fail)
  model_dir = FLAGS.model_dir
  try:
    task = tf_config.current_task()
    run_config = _distribution_run_config(task)
    if not model_dir:
      raise ConfigError("--model_dir is empty: give a directory for the run")
    if FLAGS.export_only:
      _export_only(model_dir)
      return
    if FLAGS.progress_secs < 0:
      raise ConfigError(f"--progress_secs={FLAGS.progress_secs}: must be >= 0 "
                        "(0 turns progress lines off)")
    if task.type in ("ps", "worker", "evaluator"):
      _run_task(task, c, model_dir)
      return
    # The config is validated (and shrunk when quick) here, once.
    built = search.build_search(c, model_dir, run_config, task=task,
                                overwrite=FLAGS.overwrite)
    c = built.config
    role = f", as the chief of {_describe(task)}" if task.distributed else ""
    if run_config is not None:
      replicas = run_config.train_distribute.num_replicas_in_sync
      role += f", mirrored over {replicas} device(s)"
    print(f"improve-nas: {c.generator} search on {c.dataset}, up to "
          f"{c.max_iterations} iterations of {c.steps_per_iteration} steps, "
          f"model_dir={model_dir}{role}", flush=True)
    start = time.time()

    def iteration_done(r):
      print(search_output.iteration_line(r, c.max_iterations), flush=True)

    def show(p):
      print(progress.format_progress(p), flush=True)

    with search_output.search_errors(_fail, model_dir), \
        search.StopRequest() as stop:
      result = search.run_search(
          built, on_iteration=iteration_done,
          on_progress=show if FLAGS.progress_secs > 0 else None,
          progress_secs=FLAGS.progress_secs, export=FLAGS.export, stop=stop,
          on_status=(lambda line: print(f"  {line}", flush=True))
          if FLAGS.progress_secs > 0 else None,
          on_notice=lambda line: print(f"improve-nas: {line}", flush=True))
  except ConfigError as e:
    _fail(str(e))
  search_output.finish(result, stop, start, model_dir)


def _describe(task) -> str:
  jobs = ", ".join(f"{len(v)} {k}" for k, v in sorted(task.cluster.items()))
  return f"a cluster of {jobs}"


def _run_task(task, c, model_dir: str) -> None:
  """A parameter server, worker or evaluator of a TF_CONFIG cluster."""
  # pylint: disable=g-import-not-at-top
  from improve_nas import config as config_lib
  from improve_nas import lock
  from improve_nas import roles
  from improve_nas import search
  # pylint: enable=g-import-not-at-top
  if task.type != "ps":  # the chief holds model_dir's lock for the cluster
    lock.check_cluster_member(model_dir, task.cluster)
  if task.type == "ps":
    config_lib.validate(c)
    print(f"improve-nas: parameter server {task.index} of "
          f"{_describe(task)} serving", flush=True)
    roles.serve_parameters(task)
  elif task.type == "worker":
    built = search.build_search(c, model_dir, stream=task.index + 1,
                                task=task, overwrite=FLAGS.overwrite)
    c = built.config
    print(f"improve-nas: worker {task.index} of {_describe(task)} training "
          f"up to {c.max_iterations} iterations ({c.placement} placement), "
          f"model_dir={model_dir}", flush=True)
    roles.train_worker(built)
    print(f"improve-nas: worker {task.index} done", flush=True)
  else:
    built = search.build_search(c, model_dir, task=task,
                                overwrite=FLAGS.overwrite)
    print(f"improve-nas: evaluator of {_describe(task)} evaluating new "
          f"checkpoints in {model_dir}", flush=True)

    def show(metrics):
      print(f"  step {int(metrics['global_step'])}: accuracy "
            f"{metrics['accuracy']:.4f}, loss {metrics['average_loss']:.4f}",
            flush=True)

    count = roles.evaluate_checkpoints(built, on_result=show)
    print(f"improve-nas: evaluator done after {count} checkpoints",
          flush=True)


class _QuietStorageFailures(logging_std.Filter):
  """Drops TensorFlow's multi-line reports of a write that failed for lack
  of space (its event-writer thread logs and raises them); the command then
  says it in one line."""

  def filter(self, record):
    return search_output.storage_failure(record.getMessage()) is None


def _quiet_storage_failures() -> None:
  logging_std.getLogger("tensorflow").addFilter(_QuietStorageFailures())
  default_hook = threading.excepthook

  def hook(args):
    if search_output.storage_failure(args.exc_value) is None:
      default_hook(args)

  threading.excepthook = hook


def _export_only(model_dir: str) -> None:
  """--export_only: the SavedModel of an existing search, with its config."""
  # pylint: disable=g-import-not-at-top
  from improve_nas import export as export_lib
  from improve_nas import lock as lock_lib
  from improve_nas import model_dir as model_dir_lib
  # pylint: enable=g-import-not-at-top
  saved = search_output.saved_search_config(model_dir, "adanet")
  with lock_lib.ModelDirLock(model_dir, role="export"):
    _, lines = model_dir_lib.ensure_intact_checkpoint(model_dir)
    for line in lines:
      print(f"improve-nas: {line}", flush=True)
    print(f"SavedModel: "
          f"{export_lib.export_saved_model(saved, model_dir)}")


def _distribution_run_config(task):
  """The RunConfig --distribution asks for (None: adanet's default)."""
  from improve_nas import mirrored  # pylint: disable=g-import-not-at-top
  if not search_output.wants_mirrored(FLAGS):
    return None
  if task.distributed:
    raise ConfigError(f"--distribution=mirrored is for one machine, but "
                      f"TF_CONFIG makes this process the {task} of a cluster; "
                      "unset TF_CONFIG or drop --distribution")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.estimator.RunConfig(
      train_distribute=mirrored.strategy(FLAGS.cpu_devices))


def _define_config_flag():
  # ml_collections reads the config file and its --config.FIELD overrides
  # from sys.argv as soon as the flag is defined; shipped configs go by
  # name (--config=demo, --config=paper:cifar10,w_akd).
  from improve_nas import configs  # pylint: disable=g-import-not-at-top
  sys.argv[:] = configs.resolve_argv(sys.argv)
  try:
    config_flags.DEFINE_config_file(
        "config", configs.path("demo"), "A shipped config by name (demo, or "
        "paper:DATASET,ROW) or an ml_collections config file; override "
        "fields with --config.FIELD=VALUE.", lock_config=True)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError,
          OSError) as e:
    text = str(e).splitlines()[0] if str(e) else repr(e)
    _fail(f"bad --config or --config.FIELD override: {text} (the fields are "
          "those of improve_nas/config.py:base_config)")


def run():
  """Console-script entry point (improve-nas)."""
  _define_config_flag()
  app.run(main, flags_parser=cli.flags_parser("improve-nas"))


if __name__ == "__main__":
  run()
