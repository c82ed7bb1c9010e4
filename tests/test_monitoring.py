"""What users watch and keep: TensorBoard summaries, the search record, the
console progress, improve-nas-report and the exported SavedModel.

One 3-iteration search (constant generator, adaptive KD, learned mixture
weights, tiny towers) is shared by the tests of this module; its model is
exported on demand with `improve-nas --export_only`. (Searches with a dynamic
generator, whose report shows candidates not chosen, run in test_search.)
"""

import csv
import collections
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from improve_nas import estimator as estimator_lib
from improve_nas import report
from improve_nas import records as records_lib
from improve_nas import search
from improve_nas.data.input import preprocess
from improve_nas.dataset_facts import DatasetFacts
from improve_nas.nasnet.tower import NasnetTower
from improve_nas.progress import Progress, format_progress, format_seconds

from test_cli import _run
from test_search import tiny_config

STEPS = 4
ITERATIONS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("monitoring") / "run")
  c = tiny_config(generator="constant", knowledge_distillation="adaptive",
                  learn_mixture_weights=True, max_iterations=ITERATIONS,
                  steps_per_iteration=STEPS, save_summary_steps=2)
  events = []
  result = search.run_search(c, model_dir, on_progress=events.append,
                             progress_secs=0.0)
  return c, model_dir, result, events


def _events(directory):
  """{tag: [(step, value)]} of every scalar, text and image in `directory`."""
  out = {}
  for path in sorted(glob.glob(os.path.join(directory, "events.out.*"))):
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.TENSORS: 0,
                             event_accumulator.IMAGES: 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
      for e in acc.Tensors(tag):
        out.setdefault(tag, []).append((e.step, tf.make_ndarray(e.tensor_proto)))
    for tag in acc.Tags()["images"]:
      out.setdefault(tag, []).extend((e.step, e) for e in acc.Images(tag))
  return out


def test_candidate_and_ensemble_summaries(run):
  c, model_dir, result, _ = run
  for r in result.records:
    for x in r.candidates:
      tags = _events(os.path.join(model_dir, "subnetwork",
                                  f"t{r.iteration}_{x.name}"))
      for tag in ("loss/label", "loss/kd", "loss/aux", "loss/total",
                  "accuracy", "learning_rate", "drop_path_keep_prob/last_cell"):
        assert tag in tags, (x.name, tag, sorted(tags))
      values = {tag: [float(v) for _, v in tags[tag]] for tag in tags
                if tag != "iteration_step/adanet/iteration_step"}
      assert all(v > 0 for v in values["loss/label"])
      assert all(v == 0 for v in values["loss/aux"])  # aux head off here
      assert all(np.isfinite(v) for vs in values.values() for v in vs)
      assert all(0 <= v <= 1 for v in values["accuracy"])
      assert all(0 <= v <= c.learning_rate + 1e-7 for v in values["learning_rate"])
      assert max(values["learning_rate"]) > 0
      kd = values["loss/kd"]
      assert all(v > 0 for v in kd) if r.iteration else all(v == 0 for v in kd)
      # Summaries every save_summary_steps=2 steps of the iteration.
      steps = sorted(s for s, _ in tags["loss/label"])
      assert steps[0] in (r.iteration * STEPS, r.iteration * STEPS + 1)
      assert 2 <= len(steps) <= STEPS // 2 + 1

    ensemble = f"t{r.iteration}_{r.chosen}_grow_learned"
    tags = _events(os.path.join(model_dir, "ensemble", ensemble))
    for i in range(r.iteration + 1):
      assert f"mixture_weight/{i}" in tags
    assert "accuracy" in tags and "learning_rate" in tags and "loss" in tags
    for i in range(r.iteration + 1):
      weights = [float(v) for _, v in tags[f"mixture_weight/{i}"]]
      assert len(weights) >= 2 and all(np.isfinite(weights))
    # The record holds the trained weights as saved in the checkpoint.
    reader = tf.train.load_checkpoint(model_dir)
    saved = [float(reader.get_tensor(
        f"adanet/iteration_{r.iteration}/ensemble_{ensemble}/"
        f"weighted_subnetwork_{i}/logits/mixture_weight"))
             for i in range(r.iteration + 1)]
    np.testing.assert_allclose(r.mixture_weights, saved, atol=1e-6)
    assert r.mixture_weights != [1 / (r.iteration + 1)] * (r.iteration + 1)


def test_events_hold_one_graph_per_iteration_and_read_back_whole(run):
  """TensorBoard gets the training graph once per iteration, in the
  model_dir's run only; no events file is cut short by a second writer;
  each iteration after the first starts from an increment checkpoint
  written without building a graph."""
  _, model_dir, _, _ = run
  graphs = {}
  for path in glob.glob(os.path.join(model_dir, "**", "events.out.*"),
                        recursive=True):
    kinds = collections.Counter(
        e.WhichOneof("what")
        for e in tf.compat.v1.train.summary_iterator(path))  # whole, or raises
    assert not kinds["meta_graph_def"], path
    if kinds["graph_def"]:
      graphs[os.path.relpath(path, model_dir)] = kinds["graph_def"]
  assert sum(graphs.values()) == ITERATIONS, graphs
  assert all(os.sep not in name for name in graphs), graphs
  acc = event_accumulator.EventAccumulator(
      model_dir, size_guidance={event_accumulator.GRAPH: 0})
  acc.Reload()
  assert any("/nasnet/" in node.name for node in acc.Graph().node)
  for iteration in range(1, ITERATIONS):
    prefix = os.path.join(model_dir, f"increment.ckpt-{iteration}")
    reader = tf.train.load_checkpoint(prefix)
    names = reader.get_variable_to_shape_map()
    assert int(reader.get_tensor("current_iteration")) == iteration
    assert not [n for n in names if n.startswith(f"adanet/iteration_"
                                                 f"{iteration}/")]
    assert not glob.glob(prefix + ".meta")
  assert not os.path.exists(os.path.join(model_dir, "temp_model_dir"))


def test_search_run_has_architecture_text_and_images(run):
  _, model_dir, result, _ = run
  tags = _events(os.path.join(model_dir, search.SUMMARY_DIR))
  texts = sorted(tags["architecture"], key=lambda e: e[0])
  assert [s for s, _ in texts] == [r.global_step for r in result.records]
  for (_, text), r in zip(texts, result.records):
    text = text.item().decode() if text.ndim == 0 else text[0].decode()
    chosen = next(x.arch for x in r.candidates if x.name == r.chosen)
    assert f"Iteration {r.iteration}" in text and chosen in text
    assert all(a in text for a in r.ensemble_archs)
  accuracy = [float(v) for _, v in sorted(tags["ensemble/test_accuracy"],
                                          key=lambda e: e[0])]
  assert accuracy == pytest.approx([r.test_accuracy for r in result.records])

  images = _events(model_dir)
  image_tags = [t for t in images if t.startswith("augmented_images")]
  assert len(image_tags) == 3
  event = images[image_tags[0]][0][1]
  # Written every save_summary_steps=2 global steps, not only once per session.
  steps = {s for s, _ in images[image_tags[0]]}
  assert set(range(2, ITERATIONS * STEPS + 1, 2)) <= steps, sorted(steps)
  assert (event.height, event.width) == (8, 8)
  decoded = tf.io.decode_png(event.encoded_image_string).numpy()
  assert decoded.shape == (8, 8, 1) and decoded.std() > 0


def test_search_record_is_complete_and_saved(run):
  c, model_dir, result, _ = run
  records = result.records
  assert records == records_lib.load_records(model_dir)
  assert [r.iteration for r in records] == list(range(ITERATIONS))
  for r in records:
    assert len(r.mixture_weights) == len(r.ensemble_archs) == r.iteration + 1
    assert all(np.isfinite(w) for w in r.mixture_weights)
    assert set(r.eval_metrics) == {"accuracy", "average_loss", "loss"}
    assert r.eval_metrics["accuracy"] == pytest.approx(r.test_accuracy)
    assert 0 < r.train_seconds <= r.seconds
    assert r.steps_per_second == pytest.approx(STEPS / r.train_seconds,
                                               rel=0.05)
    assert r.global_step == (r.iteration + 1) * STEPS
    # Each member's own accuracy; the frozen ones keep theirs.
    assert len(r.member_accuracies) == r.iteration + 1
    assert r.member_accuracies[-1] == r.candidates[0].test_accuracy
    assert r.member_accuracies[:-1] == records[r.iteration - 1].member_accuracies[
        :r.iteration] if r.iteration else True
    assert r.ensemble_gain == pytest.approx(
        r.test_accuracy - max(r.member_accuracies), abs=1e-6)
    # Training compute: the trained candidate (3 x its forward pass; these
    # towers have no aux head) and every frozen member's forward pass.
    assert not c.use_aux_head
    cost = DatasetFacts.load(c).cost
    per_example = (3 * cost(r.ensemble_archs[-1]).mult_adds +
                   sum(cost(a).mult_adds for a in r.ensemble_archs[:-1]))
    assert r.train_mult_adds == per_example * STEPS * c.batch_size > 0
    assert r.candidates[0].mult_adds == cost(r.ensemble_archs[-1]).mult_adds


def _own_accuracy(c, model_dir, iteration, record):
  """The accuracy of member `iteration` computed apart from the search: its
  tower rebuilt in a fresh graph, every weight read from the latest
  checkpoint by name, run on the eval split's first eval_steps batches."""
  prefix = f"adanet/iteration_{iteration}/subnetwork_t{iteration}_{record.chosen}/"
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    images, labels = tf.compat.v1.data.make_one_shot_iterator(
        estimator_lib.input_fns(c).eval()).get_next()
    arch = next(x.arch for x in record.candidates if x.name == record.chosen)
    tower = NasnetTower(arch, 10, use_aux_head=False, name="nasnet")
    logits = tower(images["image"], training=False)["logits"]
    # Every weight by its name in the search's checkpoint, in one restore
    # (a missing name fails it).
    tf.compat.v1.train.Saver(
        {prefix + v.name[:-len(":0")]: v for v in tower.weights}).restore(
            session, tf.train.latest_checkpoint(model_dir))
    right = seen = 0
    for _ in range(c.eval_steps):
      out, truth = session.run([logits, labels])
      right += int(np.sum(out.argmax(-1) == truth.reshape(-1)))
      seen += truth.size
  return right / seen


def test_each_member_accuracy_matches_an_independent_evaluation(run):
  c, model_dir, result, _ = run
  final = result.records[-1]
  for t, record in enumerate(result.records):
    assert final.member_accuracies[t] == pytest.approx(
        _own_accuracy(c, model_dir, t, record), abs=1e-6)


def test_progress_reports_every_step_with_eta(run):
  c, _, result, events = run
  assert all(isinstance(p, Progress) for p in events)
  by_iteration = {}
  for p in events:
    by_iteration.setdefault(p.iteration, []).append(p)
  assert sorted(by_iteration) == list(range(ITERATIONS))
  for t, ps in by_iteration.items():
    assert [p.step for p in ps] == list(range(1, STEPS + 1))
    assert all(p.iterations == ITERATIONS and p.steps == STEPS for p in ps)
    names = {x.name for x in result.records[t].candidates}
    assert all(set(p.losses) == names for p in ps)
    assert all(np.isfinite(v) and v > 0 for p in ps for v in p.losses.values())
    # Warm-up (2 steps) first: no speed, no ETA; then both.
    assert ps[0].examples_per_second is None and ps[0].eta_iteration is None
    last = ps[-1]
    assert last.examples_per_second > 0
    assert last.eta_iteration == 0
    later = ITERATIONS - t - 1
    steps_per_second = last.examples_per_second / c.batch_size
    # From the second iteration on, the time between iterations counts too.
    extra = last.overhead or 0.0
    assert (last.overhead is None) == (t == 0)
    assert t == 0 or 0 < last.overhead < result.records[t - 1].seconds
    assert last.eta_search == pytest.approx(
        extra + later * (STEPS / steps_per_second + extra))
  line = format_progress(events[-1])
  assert line.startswith(f"  iteration {ITERATIONS}/{ITERATIONS}  step "
                         f"{STEPS}/{STEPS}")
  assert "ex/s" in line and "ETA iteration 0s, search " in line


def test_format_seconds():
  assert format_seconds(None) == "?"
  assert format_seconds(42.4) == "42s"
  assert format_seconds(125) == "2m05s"
  assert format_seconds(3725) == "1h02m"


def test_export_only_serves_raw_images_like_predict(run):
  _, model_dir, result, _ = run
  assert result.export_path is None  # run_search exports only when asked
  proc = _run("trainer.main", "--export_only", f"--model_dir={model_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  path = proc.stdout.strip().splitlines()[-1].split("SavedModel: ")[1]
  assert os.path.dirname(path) == os.path.join(model_dir, "export")
  assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
  loaded = tf.saved_model.load(path)
  assert {"serving_default", "predict"} <= set(loaded.signatures)
  serve = loaded.signatures["serving_default"]
  assert set(serve.structured_outputs) == {"class_ids", "probabilities"}
  spec = serve.structured_input_signature[1]["image"]
  assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 8, 8, 1]
  images = np.random.RandomState(3).randint(0, 256, (6, 8, 8, 1)).astype(
      np.uint8)
  served = serve(image=tf.constant(images))
  predicted = next(result.estimator.predict(
      lambda: tf.data.Dataset.from_tensors(
          {"image": preprocess(tf.constant(images), 8)}),
      yield_single_examples=False))
  np.testing.assert_allclose(served["probabilities"].numpy(),
                             predicted["probabilities"], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(served["class_ids"].numpy(),
                                predicted["class_ids"].reshape(-1))
  assert served["probabilities"].shape == (6, 10)
  # TensorFlow Serving's way in: the TF 1 loader, in a graph session.
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    meta = tf.compat.v1.saved_model.loader.load(
        session, [tf.saved_model.SERVING], path)
    signature = meta.signature_def["serving_default"]
    ids = session.run(signature.outputs["class_ids"].name,
                      {signature.inputs["image"].name: images})
  np.testing.assert_array_equal(ids, served["class_ids"].numpy())
  # Images of another size, depth or rank are refused, never resized or
  # guessed at; another dtype is refused by the signature itself.
  for shape in [(3, 9, 8, 1), (2, 8, 8, 3), (8, 8, 1)]:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"Shape of tensor image \[.*\] is not compatible "
                       r"with expected shape \[\?,8,8,1\]"):
      serve(image=tf.zeros(shape, tf.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError, match="uint8"):
    serve(image=tf.zeros((2, 8, 8, 1), tf.float32))


def _table_lines(stdout):
  lines = stdout.splitlines()
  start = next(i for i, l in enumerate(lines) if l.startswith("iter "))
  body = []
  for line in lines[start + 2:]:
    if not line.strip() or line.startswith("final ensemble"):
      break
    body.append(line.split())
  return body


def test_report_command_writes_matching_json_csv_and_plots(run, tmp_path):
  _, model_dir, result, _ = run
  proc = _run("trainer.report", f"--model_dir={model_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = _table_lines(proc.stdout)
  candidates = sum(len(r.candidates) for r in result.records)
  assert len(table) == candidates
  assert "finished: 3 iterations" in proc.stdout
  out = os.path.join(model_dir, report.REPORT_DIR)
  with open(os.path.join(out, "report.json")) as f:
    saved = json.load(f)
  with open(os.path.join(out, "report.csv")) as f:
    rows = list(csv.DictReader(f))
  assert saved["state"] == "finished" and len(saved["iterations"]) == 3
  assert saved["final"]["ensemble_archs"] == result.records[-1].ensemble_archs
  assert len(rows) == len(saved["rows"]) == candidates
  for cells, row, jrow in zip(table, rows, saved["rows"]):
    assert cells[0] == row["iteration"] == str(jrow["iteration"])
    assert cells[1] == row["candidate"] == jrow["candidate"]
    assert cells[2] == row["arch"] == jrow["arch"]
    assert cells[3] == f"{int(row['params']):,}" == f"{jrow['params']:,}"
    # A lone candidate is not evaluated for selection: "-" and empty.
    assert cells[4] == ("-" if row["selection_loss"] == "" else
                        f"{float(row['selection_loss']):.4f}")
    assert jrow["selection_loss"] == (None if row["selection_loss"] == ""
                                      else float(row["selection_loss"]))
    assert cells[5] == f"{float(row['own_test_accuracy']):.4f}"
    assert float(row["own_test_accuracy"]) == jrow["own_test_accuracy"]
    if row["chosen"] == "True":
      assert jrow["chosen"] and cells[6] == "*"
      assert cells[7] == f"{float(row['mixture_weight']):.4f}"
      assert cells[9] == f"{float(row['test_accuracy']):.4f}"
      assert float(row["test_accuracy"]) == jrow["test_accuracy"]
      assert cells[10] == f"{float(row['ensemble_gain']):+.4f}"
  for name in ("architectures.png", "progress.png"):
    png = tf.io.decode_png(tf.io.read_file(os.path.join(out, name))).numpy()
    assert png.shape[0] > 100 and png.shape[1] > 100
    assert len(np.unique(png.reshape(-1, png.shape[-1]), axis=0)) > 10

  # A search stopped (or still running) after its first iteration.
  partial = str(tmp_path / "partial")
  shutil.copytree(model_dir, partial, ignore=shutil.ignore_patterns(
      "export", "report"))
  with open(os.path.join(partial, search.RECORDS_FILE)) as f:
    saved = json.load(f)
  saved["iterations"] = saved["iterations"][:1]
  with open(os.path.join(partial, search.RECORDS_FILE), "w") as f:
    json.dump(saved, f)
  status = report.write_report(partial)
  assert status["state"] == "running"
  # Its latest checkpoint ends the second iteration, not yet recorded.
  assert status["detail"] == (f"running (or stopped): iteration 2 of 3 at "
                              f"step {STEPS} of {STEPS}")
  assert len(status["rows"]) == len(result.records[0].candidates)


def test_report_and_export_commands_reject_bad_model_dirs(tmp_path):
  proc = _run("trainer.report", f"--model_dir={tmp_path / 'missing'}")
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0 and "missing" in proc.stderr
  (tmp_path / "empty").mkdir()
  proc = _run("trainer.report", f"--model_dir={tmp_path / 'empty'}")
  assert proc.returncode == 2 and "holds no improve_nas search" in proc.stderr
  proc = _run("trainer.main", "--export_only",
              f"--model_dir={tmp_path / 'empty'}")
  assert proc.returncode == 2 and "--export_only" in proc.stderr
  assert proc.stderr.strip().count("\n") == 0
  assert os.listdir(tmp_path / "empty") == []
