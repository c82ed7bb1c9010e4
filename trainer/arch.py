"""improve-nas-arch: parameters and multiply-adds of NASNet-A architectures.

    improve-nas-arch 6@768 7@2304 1@240 --num_classes=10
    improve-nas-arch 1@144 --image_size=8 --channels=1 --aux_head_bottleneck=32 --aux_head_filters=128
"""

from __future__ import annotations

from absl import app
from absl import flags

from trainer import cli
from improve_nas.errors import ConfigError
from improve_nas.nasnet.arch import AUX_HEAD_FILTERS, ArchSpec

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_classes", 10, "Classes of the logits layer.")
flags.DEFINE_integer("image_size", 32, "Height and width of the input image.")
flags.DEFINE_integer("channels", 3, "Channels of the input image.")
flags.DEFINE_integer("aux_head_bottleneck", AUX_HEAD_FILTERS[0],
                     "Auxiliary head: channels of its 1x1 conv (the "
                     "paper's; config.aux_head_bottleneck).")
flags.DEFINE_integer("aux_head_filters", AUX_HEAD_FILTERS[1],
                     "Auxiliary head: channels of its last conv (the "
                     "paper's; config.aux_head_filters).")


def _fail(message: str) -> None:
  cli.fail("improve-nas-arch", message)


def main(argv):
  # (TensorFlow loads here, after the flags are parsed)
  # pylint: disable=g-import-not-at-top
  from improve_nas.nasnet.counting import tower_cost
  from improve_nas.nasnet.tower import check_aux_head_filters
  from improve_nas.nasnet.tower import check_image_shape
  from improve_nas.verbosity import set_tf_verbosity
  # pylint: enable=g-import-not-at-top
  set_tf_verbosity(False)
  if len(argv) < 2:
    _fail("give at least one architecture, e.g. improve-nas-arch 6@768 7@2304")
  try:
    archs = [ArchSpec.parse(a) for a in argv[1:]]
    if FLAGS.num_classes < 2:
      raise ConfigError(f"--num_classes={FLAGS.num_classes}: must be >= 2")
    if FLAGS.channels < 1:
      raise ConfigError(f"--channels={FLAGS.channels}: must be >= 1")
    check_image_shape(FLAGS.image_size)
    aux = check_aux_head_filters((FLAGS.aux_head_bottleneck,
                                  FLAGS.aux_head_filters))
  except ConfigError as e:
    _fail(str(e))
  size = FLAGS.image_size
  header = ("arch", "params", "params+aux", f"mult-adds/{size}x{size}",
            "mult-adds+aux")
  rows = [header]
  for arch in archs:
    cost = tower_cost(arch, FLAGS.num_classes, size, FLAGS.channels, aux)
    rows.append((str(arch), f"{cost.params:,}", f"{cost.params_with_aux:,}",
                 f"{cost.mult_adds:,}", f"{cost.mult_adds_with_aux:,}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  for row in rows:
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths))))


def run():
  """Console-script entry point (improve-nas-arch)."""
  app.run(main, flags_parser=cli.flags_parser("improve-nas-arch"))


if __name__ == "__main__":
  run()
