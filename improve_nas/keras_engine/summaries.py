"""The Keras engine's TensorBoard runs, under the adanet engine's names:

- `search`: the per-iteration summaries (iteration.summarize);
- the model_dir itself: three augmented training images
  (augmented_images/image/0, 1, 2);
- `subnetwork/tT_NAME`: each candidate's loss terms (loss/label, loss/aux,
  loss/weight_decay, loss/kd, loss/total), learning_rate, accuracy (of the
  training batch) and drop_path_keep_prob/last_cell;
- `ensemble/tT_NAME_grow_KIND` (KIND: learned or uniform): each candidate
  ensemble's mixture_weight/i, loss, accuracy, and learning_rate when its
  weights are learned.

Written every save_summary_steps steps, at the step just trained.
"""

from __future__ import annotations

import os
from typing import Dict

import tensorflow as tf

from improve_nas.model_dir import SUMMARY_DIR

__all__ = ["Writers"]

_TERMS = ("label", "aux", "weight_decay", "kd", "total")
IMAGE_TAG = "augmented_images"  # as the adanet engine's ImageSummaryHook
_IMAGES = 3


class Writers:
  """The summary writers of one model_dir, made when first written to."""

  def __init__(self, model_dir: str):
    self._model_dir = model_dir
    self._writers: Dict[str, tf.summary.SummaryWriter] = {}

  @property
  def search(self) -> tf.summary.SummaryWriter:
    return self._writer(SUMMARY_DIR)

  def _writer(self, relative: str) -> tf.summary.SummaryWriter:
    if relative not in self._writers:
      self._writers[relative] = tf.summary.create_file_writer(
          os.path.join(self._model_dir, relative))
    return self._writers[relative]

  def training(self, trainer, out, step: int, images=None) -> None:
    """The scalars of a training step's output `out` (IterationTrainer.
    train_step) and a few of its augmented `images` (in [-1, 1]), at global
    step `step`."""
    t = trainer.iteration
    if images is not None:
      self._images(images[:_IMAGES], step)
    kind = "learned" if trainer.c.learn_mixture_weights else "uniform"
    for k, candidate in enumerate(trainer.candidates):
      terms = out["terms"][k]
      with self._writer(f"subnetwork/t{t}_{candidate.name}").as_default(
          step=step):
        for term in _TERMS:
          tf.summary.scalar(f"loss/{term}", terms[term])
        tf.summary.scalar("learning_rate", terms["learning_rate"])
        tf.summary.scalar("accuracy", terms["accuracy"])
        tf.summary.scalar("drop_path_keep_prob/last_cell",
                          terms["drop_path_keep_prob"])
      ensemble = out["ensemble"][k]
      with self._writer(
          f"ensemble/t{t}_{candidate.name}_grow_{kind}").as_default(step=step):
        for i, weight in enumerate(trainer.mix[k]):
          tf.summary.scalar(f"mixture_weight/{i}", weight)
        tf.summary.scalar("loss", ensemble["loss"])
        tf.summary.scalar("accuracy", ensemble["accuracy"])
        if trainer.c.learn_mixture_weights:
          tf.summary.scalar("learning_rate", ensemble["learning_rate"])

  def _images(self, images, step: int) -> None:
    """PNG image summaries as the adanet engine writes them (TF 1 Summary
    protos, which TensorBoard's event reader lists under "images")."""
    pixels = tf.cast(tf.round((images + 1.0) * 127.5), tf.uint8)
    height, width, channels = (int(x) for x in pixels.shape[1:])
    summary = tf.compat.v1.Summary(value=[
        tf.compat.v1.Summary.Value(
            tag=f"{IMAGE_TAG}/image/{i}",
            image=tf.compat.v1.Summary.Image(
                height=height, width=width, colorspace=channels,
                encoded_image_string=tf.io.encode_png(image).numpy()))
        for i, image in enumerate(pixels)])
    with self._writer("").as_default(step=step):
      tf.summary.experimental.write_raw_pb(summary.SerializeToString())

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()
