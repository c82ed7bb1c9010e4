"""The Keras engine's search from the command line: what it records, writes
for TensorBoard and exports, and how it resumes after SIGKILL."""

import dataclasses
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from improve_nas.data import datasets
from improve_nas.records import CandidateRecord, IterationRecord

import forkserver
import keras_run
from keras_run import ROOT, STEPS, Run


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted search: (model_dir, its run)."""
  model_dir = str(tmp_path_factory.mktemp("reference"))
  run = Run(model_dir).until()
  assert run.returncode == 0, run.output[-3000:]
  return model_dir, run


def test_records_have_every_field_of_the_adanet_engines(reference):
  model_dir, run = reference
  saved = keras_run.records(model_dir)
  assert [r["iteration"] for r in saved] == [0, 1]
  fields = {f.name for f in dataclasses.fields(IterationRecord)}
  for raw in saved:
    assert set(raw) == fields
    assert {f.name for f in dataclasses.fields(CandidateRecord)} == set(
        raw["candidates"][0])
    r = IterationRecord.from_dict(raw)
    assert r.chosen in [x.name for x in r.candidates]
    assert r.global_step == (r.iteration + 1) * STEPS
    assert len(r.mixture_weights) == len(r.ensemble_archs) == r.iteration + 1
    assert len(r.member_accuracies) == r.iteration + 1
    assert 0 <= r.test_accuracy <= 1 and r.test_loss > 0
    assert set(r.eval_metrics) == {"accuracy", "average_loss", "loss"}
    assert all(x.selection_loss > 0 for x in r.candidates)
    assert r.train_mult_adds > 0 and r.steps_per_second > 0
  first, second = (IterationRecord.from_dict(r) for r in saved)
  # The dynamic generator: a deeper and a wider neighbour each time, the
  # second time of the member chosen first.
  for r in (first, second):
    assert sorted(x.reason for x in r.candidates) == ["deeper", "wider"]
  assert second.ensemble_archs[0] == next(
      x.arch for x in first.candidates if x.name == first.chosen)
  assert "iteration 2/2: chose" in run.output and "ETA" in run.output
  assert "SavedModel:" in run.output


def test_report_reads_the_search_unchanged(reference):
  model_dir, _ = reference
  proc = forkserver.run(
      [sys.executable, "-m", "trainer.report", f"--model_dir={model_dir}"],
      cwd=ROOT, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 0, proc.stderr[-2000:]
  chosen = [r["chosen"] for r in keras_run.records(model_dir)]
  assert all(name in proc.stdout for name in chosen)
  assert os.path.exists(os.path.join(model_dir, "report", "report.json"))


def _scalars(directory):
  acc = event_accumulator.EventAccumulator(
      directory, size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  out = {}
  for tag in acc.Tags()["tensors"]:
    values = [(e.step, tf.make_ndarray(e.tensor_proto))
              for e in acc.Tensors(tag)]
    if all(v.dtype.kind == "f" for _, v in values):  # not texts, records
      out[tag] = [(step, float(v)) for step, v in values]
  return out


def test_tensorboard_has_the_adanet_engines_tags(reference):
  model_dir, _ = reference
  for raw in keras_run.records(model_dir):
    r = IterationRecord.from_dict(raw)
    for x in r.candidates:
      tags = _scalars(os.path.join(model_dir, "subnetwork",
                                   f"t{r.iteration}_{x.name}"))
      for tag in ("loss/label", "loss/kd", "loss/aux", "loss/total",
                  "loss/weight_decay", "accuracy", "learning_rate",
                  "drop_path_keep_prob/last_cell"):
        assert tag in tags, (x.name, tag)
      steps = [s for s, _ in tags["loss/label"]]
      assert steps == list(range(r.iteration * STEPS + 2,
                                 (r.iteration + 1) * STEPS + 1, 2))
      kd = [v for _, v in tags["loss/kd"]]
      assert all(v > 0 for v in kd) if r.iteration else all(
          v == 0 for v in kd)
      assert all(v > 0 for _, v in tags["loss/aux"])
      ensemble = _scalars(os.path.join(
          model_dir, "ensemble", f"t{r.iteration}_{x.name}_grow_learned"))
      for i in range(r.iteration + 1):
        assert f"mixture_weight/{i}" in ensemble
      assert {"loss", "accuracy", "learning_rate"} <= set(ensemble)
    # The learned weights moved from 1/n, and the record holds the last.
    ensemble = _scalars(os.path.join(
        model_dir, "ensemble", f"t{r.iteration}_{r.chosen}_grow_learned"))
    last = [ensemble[f"mixture_weight/{i}"][-1][1]
            for i in range(r.iteration + 1)]
    assert last == pytest.approx(r.mixture_weights, abs=1e-6)
    assert any(abs(w - 1 / len(last)) > 1e-6 for w in last)
  images = event_accumulator.EventAccumulator(
      model_dir, size_guidance={event_accumulator.IMAGES: 0})
  images.Reload()
  tags = images.Tags()["images"]
  assert sorted(tags) == [f"augmented_images/image/{i}" for i in range(3)]
  assert [e.step for e in images.Images(tags[0])] == list(
      range(2, 2 * STEPS + 1, 2))
  assert images.Images(tags[0])[0].height == 8
  search = _scalars(os.path.join(model_dir, "search"))
  assert [s for s, _ in search["ensemble/test_accuracy"]] == [STEPS,
                                                               2 * STEPS]


def test_saved_model_serves_uint8_images_as_the_search_evaluated(reference):
  model_dir, _ = reference
  export = os.path.join(model_dir, "export")
  (name,) = os.listdir(export)
  loaded = tf.saved_model.load(os.path.join(export, name))
  serve = loaded.signatures["serving_default"]
  source = datasets.load_source("sklearn_digits")
  batches = source.read("test").map(
      lambda ex: (ex["image"], ex["label"])).batch(8).take(3)
  right = seen = 0
  for images, labels in batches:
    out = serve(image=images)
    assert out["class_ids"].dtype == tf.int64
    np.testing.assert_allclose(
        np.sum(out["probabilities"].numpy(), axis=1), 1.0, rtol=1e-5)
    right += int(np.sum(out["class_ids"].numpy() == labels.numpy()))
    seen += len(labels)
  last = keras_run.records(model_dir)[-1]
  # eval_steps=3 batches of 8: the examples the record's accuracy counts.
  assert right / seen == pytest.approx(last["test_accuracy"], abs=1e-6)
  # Images of another shape are refused, never resized.
  refused = (ValueError, TypeError, tf.errors.InvalidArgumentError)
  with pytest.raises(refused):
    serve(image=tf.zeros([2, 16, 16, 1], tf.uint8))
  logits = loaded.signatures["predict"](image=images)["logits"]
  assert logits.shape == (len(labels), 10)
  # TensorFlow Serving's way in: the TF 1 loader, which restores the
  # variables with the SavedModel's own saver, in a graph session.
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    meta = tf.compat.v1.saved_model.loader.load(
        session, ["serve"], os.path.join(export, name))
    signature = meta.signature_def["predict"]
    served = session.run(signature.outputs["logits"].name,
                         {signature.inputs["image"].name: images.numpy()})
  np.testing.assert_allclose(served, logits.numpy(), rtol=1e-5, atol=1e-5)
  # The same ensemble as a Keras model.
  from improve_nas.keras_engine import keras_file  # noqa: F401  (registers it)
  model = keras.saving.load_model(os.path.join(export, name,
                                               "ensemble.keras"))
  np.testing.assert_allclose(model(images).numpy(), logits.numpy(),
                             rtol=1e-4, atol=1e-4)


def test_killed_at_a_boundary_and_mid_iteration_resumes_to_the_same_search(
    reference, tmp_path):
  model_dir = str(tmp_path / "killed")
  search_json = os.path.join(model_dir, "search.json")
  # 1. SIGKILL once iteration 1 is recorded (between the iterations).
  Run(model_dir).until(path=search_json)
  # 2. SIGKILL mid-iteration 2, once its first checkpoint (step 8) is the
  # one to resume.
  state = os.path.join(model_dir, "checkpoint")

  def mid_iteration(_):
    try:
      with open(state) as f:
        return f"keras.ckpt-{STEPS + 2}\"" in f.readline()
    except OSError:
      return False

  Run(model_dir).until(path=mid_iteration)
  # 3. To the end.
  run = Run(model_dir).until()
  assert run.returncode == 0, run.output[-3000:]
  assert f"resuming from keras.ckpt-{STEPS + 2}" in run.output
  assert keras_run.summary(keras_run.records(model_dir)) == keras_run.summary(
      keras_run.records(reference[0]))
