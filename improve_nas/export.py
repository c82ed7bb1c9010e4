"""The SavedModel of a search: its latest ensemble, serving raw images.

`export_saved_model` exports through the adanet.Estimator and re-saves the
result with a `serving_default` signature of class ids and probabilities;
`serving_input_receiver_fn` is the serving input both signatures share.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import ml_collections
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from improve_nas import config as config_lib
from improve_nas import tf_config
from improve_nas.adanas_estimator import AdaNasEstimator
from improve_nas.data import datasets
from improve_nas.data.input import IMAGE_KEY, preprocess
from improve_nas.dataset_facts import DatasetFacts, resolve_image_size
from improve_nas.errors import ConfigError
from improve_nas.estimator import build_estimator, input_fns

__all__ = ["SERVING_KEY", "serving_input_receiver_fn", "export_saved_model"]

# The name of the serving signature's input (raw uint8 images): the name
# of the feature the towers read.
SERVING_KEY = IMAGE_KEY


def serving_input_receiver_fn(c: ml_collections.ConfigDict,
                              info: datasets.DatasetInfo) -> Callable:
  """Serving input: uint8 images of the dataset's shape, preprocessed as in
  evaluation (resized to the search's image size, scaled to [-1, 1]).
  Images of any other shape are refused at run time."""
  size = resolve_image_size(c, info)

  shape = [None, *info.image_shape]

  def receiver_fn():
    raw = tf.compat.v1.placeholder(tf.uint8, shape, name=SERVING_KEY)
    # A signature of a TF1 graph loaded with tf.saved_model.load does not
    # check the shape it declares; images of another size or depth would
    # give a silent wrong answer, and a batch of rank 3 aborts the process.
    # They are refused (InvalidArgumentError naming both shapes), never
    # resized.
    checked = tf.ensure_shape(raw, shape, name="image_shape_check")
    features = {IMAGE_KEY: preprocess(checked, size)}
    return tf.estimator.export.ServingInputReceiver(features,
                                                    {SERVING_KEY: raw})

  return receiver_fn


def export_saved_model(c: ml_collections.ConfigDict, model_dir: str,
                       export_dir: Optional[str] = None,
                       estimator: Optional[AdaNasEstimator] = None,
                       facts: Optional[DatasetFacts] = None) -> str:
  """Exports the latest ensemble in `model_dir` as a SavedModel.

  Signatures: `serving_default` takes `image`, uint8 [batch, H, W, C] of the
  dataset's shape, and returns `class_ids` [batch] (int64) and
  `probabilities` [batch, classes]; `predict` takes the same input and also
  returns logits and class names. Returns the new SavedModel's directory, a
  timestamped folder in `export_dir` (default MODEL_DIR/export).
  `estimator` and `facts`: those of the search, when it has them already.

  Raises:
    ConfigError: `model_dir` holds no checkpoint.
  """
  if not tf.train.latest_checkpoint(model_dir):
    raise ConfigError(f"model_dir {model_dir!r} holds no checkpoint to "
                      "export; run a search there first")
  if estimator is None:  # (a search's own config is prepared already)
    c = config_lib.prepared(c)
    facts = facts or DatasetFacts.load(c)
    estimator = build_estimator(
        c, model_dir, None, facts=facts, task=tf_config.current_task(),
        selection_input_fn=input_fns(c, model_dir, facts).selection)
  info = (facts or DatasetFacts.load(c)).info
  export_dir = export_dir or os.path.join(model_dir, "export")
  staging = os.path.join(export_dir, ".staging")
  # What an export killed part-way left behind; never a usable model.
  for leftover in [staging] + tf.io.gfile.glob(
      os.path.join(export_dir, "*.partial")):
    if tf.io.gfile.exists(leftover):
      tf.io.gfile.rmtree(leftover)
  exported = estimator.export_saved_model(staging,
                                          serving_input_receiver_fn(c, info))
  exported = exported.decode() if isinstance(exported, bytes) else exported
  final = os.path.join(export_dir, os.path.basename(exported))
  _add_serving_signature(exported, final + ".partial")
  tf.io.gfile.rename(final + ".partial", final)
  tf.io.gfile.rmtree(staging)
  return final


def _add_serving_signature(source: str, target: str) -> None:
  """Writes the SavedModel at `source` to `target` with a `serving_default`
  signature of just class ids and probabilities, beside adanet's `predict`.

  adanet merges the export outputs of all candidates of the last iteration
  and adds every prediction to each PredictOutput, so a head cannot shape
  the serving signature itself; we take the tensors from its `predict`
  signature instead. The graph gains one reshape (class ids as [batch]),
  written into the SavedModel's protocol buffer: the variables and assets
  are moved, not loaded and saved again (a session doing that took 5.5 s
  of the demo's export).
  """
  with tf.io.gfile.GFile(os.path.join(source, "saved_model.pb"), "rb") as f:
    saved = saved_model_pb2.SavedModel.FromString(f.read())
  (meta,) = [m for m in saved.meta_graphs
             if list(m.meta_info_def.tags) == [tf.saved_model.SERVING]]
  predict = meta.signature_def["predict"]
  class_ids = predict.outputs["class_ids"]
  taken = {node.name for node in meta.graph_def.node}
  name = "serving_class_ids"
  while name in taken or f"{name}/shape" in taken:
    name += "_"
  shape = meta.graph_def.node.add(name=f"{name}/shape", op="Const")
  shape.attr["dtype"].type = tf.int32.as_datatype_enum
  shape.attr["value"].tensor.CopyFrom(tf.make_tensor_proto([-1], tf.int32))
  reshape = meta.graph_def.node.add(
      name=name, op="Reshape",
      input=[class_ids.name[:-2] if class_ids.name.endswith(":0")
             else class_ids.name, shape.name])
  reshape.attr["T"].type = class_ids.dtype
  reshape.attr["Tshape"].type = tf.int32.as_datatype_enum
  serving = meta_graph_pb2.SignatureDef(
      method_name=tf.saved_model.PREDICT_METHOD_NAME)
  serving.inputs[SERVING_KEY].CopyFrom(predict.inputs[SERVING_KEY])
  serving.outputs["class_ids"].CopyFrom(class_ids)
  serving.outputs["class_ids"].name = f"{reshape.name}:0"
  serving.outputs["class_ids"].tensor_shape.Clear()
  serving.outputs["class_ids"].tensor_shape.dim.add(size=-1)
  serving.outputs["probabilities"].CopyFrom(predict.outputs["probabilities"])
  kept = meta_graph_pb2.SignatureDef()
  kept.CopyFrom(predict)
  meta.signature_def.clear()
  meta.signature_def[tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
                    ].CopyFrom(serving)
  meta.signature_def["predict"].CopyFrom(kept)
  tf.io.gfile.rename(source, target)
  with tf.io.gfile.GFile(os.path.join(target, "saved_model.pb"), "wb") as f:
    f.write(saved.SerializeToString())
