"""What building one NASNet-A tower costs in a TensorFlow graph: ops and
seconds, the way the adanet engine builds it.

    .venv/bin/python bench/tower_construction.py [--arch=1@96] \
        [--image_size=8] [--channels=1] [--batch_size=32] [--repetitions=5]

Each repetition builds, in a fresh graph (median over --repetitions):
- `inference`: the forward pass in inference mode with every variable's
  initializer (what a frozen member or an evaluation cost before
  improve_nas/restored_variables.py);
- `inference_restored`: the same inside `restored_variables()`, variables
  without initializers, as the adanet engine now builds every tower that a
  checkpoint fills (evaluations, exports, frozen members);
- `training`: the forward pass in training mode with drop path, its loss
  (cross entropy, auxiliary head, weight decay) and the gradients of every
  trainable variable (what a candidate costs in a training graph, before
  the optimizer);
and reports the ops each added to the graph and the seconds it took, and
the variables of the tower. Prints one JSON object.
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

flags.DEFINE_string("arch", "1@96", "Tower N@P.")
flags.DEFINE_integer("image_size", 8, "Image side (the demo's: 8).")
flags.DEFINE_integer("channels", 1, "Image channels.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("num_classes", 10, "Classes.")
flags.DEFINE_integer("repetitions", 5, "Builds of each kind.")

FLAGS = flags.FLAGS


def make_tower():
  """The --arch tower, with the demo's 32/128-channel auxiliary head."""
  from improve_nas.nasnet.tower import NasnetTower  # pylint: disable=g-import-not-at-top
  return NasnetTower(FLAGS.arch, FLAGS.num_classes, use_aux_head=True,
                     seed=1, aux_head_filters=(32, 128))


def candidate_loss(tower, outputs, labels):
  """A candidate's training loss as the adanet engine builds it: cross
  entropy with label smoothing, the auxiliary head's, weight decay."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  onehot = tf.one_hot(labels, FLAGS.num_classes)

  def cross_entropy(logits):
    return tf.compat.v1.losses.softmax_cross_entropy(onehot, logits,
                                                     label_smoothing=0.1)

  return (cross_entropy(outputs["logits"]) +
          0.4 * cross_entropy(outputs["aux_logits"]) +
          1e-4 * tf.add_n([tf.nn.l2_loss(v) for v in tower.trainable_weights
                           if "kernel" in v.name]))


def build(training: bool, restored: bool = False):
  """(ops, seconds, variables) of one tower built in a fresh graph."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from improve_nas.restored_variables import restored_variables  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default() as graph:
    images = tf.compat.v1.placeholder(
        tf.float32, [FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size,
                     FLAGS.channels])
    labels = tf.compat.v1.placeholder(tf.int32, [FLAGS.batch_size])
    before = len(graph.get_operations())
    start = time.perf_counter()
    tower = make_tower()
    seed = tf.constant([1, 2], tf.int64)
    with restored_variables(enabled=restored):
      outputs = tower(images, training=training, progress=0.5,
                      seed=seed if training else None)
    if training:
      tf.gradients(candidate_loss(tower, outputs, labels),
                   tower.trainable_weights)
    seconds = time.perf_counter() - start
    ops = len(graph.get_operations()) - before
    variables = len(tower.weights)
  return ops, seconds, variables


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("ERROR")
  result = {"benchmark": "tower_construction", "arch": FLAGS.arch,
            "image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size,
            "cpu_count": os.cpu_count()}
  for kind, training, restored in (("inference", False, False),
                                   ("inference_restored", False, True),
                                   ("training", True, False)):
    runs = [build(training, restored) for _ in range(FLAGS.repetitions)]
    result[kind] = {
        "ops": runs[-1][0],
        "seconds_median": round(statistics.median(r[1] for r in runs), 3),
        "seconds_each": [round(r[1], 3) for r in runs],
        "variables": runs[-1][2],
    }
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
