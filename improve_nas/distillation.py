"""Knowledge distillation from the previous ensemble, by name.

`none`       (NOKD): no extra loss.
`adaptive`   (AKD): the teacher is the previous *ensemble*'s logits f_{i-1}.
`born_again` (BAN): the teacher is the previous *subnetwork*'s raw logits
             h_{i-1} (before its mixture weight).

The teacher is frozen: its logits come from the previous ensemble that adanet
rebuilds in inference mode, behind a stop-gradient.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import tensorflow as tf

from improve_nas.errors import ConfigError

__all__ = ["KD_MODES", "teacher_logits", "kd_loss", "check_mode"]


def _no_teacher(previous_ensemble) -> Optional[tf.Tensor]:
  del previous_ensemble
  return None


def _ensemble_teacher(previous_ensemble) -> Optional[tf.Tensor]:
  return previous_ensemble.logits


def _last_member_teacher(previous_ensemble) -> Optional[tf.Tensor]:
  return previous_ensemble.weighted_subnetworks[-1].subnetwork.logits


KD_MODES: Dict[str, Callable] = {
    "none": _no_teacher,
    "adaptive": _ensemble_teacher,
    "born_again": _last_member_teacher,
}


def check_mode(mode: str) -> str:
  if mode not in KD_MODES:
    raise ConfigError(
        f"knowledge_distillation {mode!r} is not known; use one of "
        f"{', '.join(KD_MODES)}")
  return mode


def teacher_logits(mode: str, previous_ensemble) -> Optional[tf.Tensor]:
  """The frozen teacher logits for `mode`, or None (no KD / first member)."""
  check_mode(mode)
  if previous_ensemble is None or not previous_ensemble.weighted_subnetworks:
    return None
  logits = KD_MODES[mode](previous_ensemble)
  return None if logits is None else tf.stop_gradient(logits)


def kd_loss(student_logits: tf.Tensor, teacher: Optional[tf.Tensor],
            temperature: float = 1.0) -> tf.Tensor:
  """Soft-target cross entropy, batch mean, scaled by temperature**2.

  Zero when there is no teacher.
  """
  if teacher is None:
    return tf.constant(0.0)
  soft_targets = tf.nn.softmax(teacher / temperature)
  cross_entropy = tf.nn.softmax_cross_entropy_with_logits(
      labels=soft_targets, logits=student_logits / temperature)
  return temperature**2 * tf.reduce_mean(cross_entropy)
