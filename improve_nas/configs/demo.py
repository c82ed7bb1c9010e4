"""The offline demo: a small AdaNAS search on the embedded digits dataset.

Command (from the repository root, after `make install`):

    .venv/bin/improve-nas --model_dir=/tmp/improve_nas_demo

Measured: 294-354 s on 2 CPU cores (export not included); three iterations of a
dynamic generator from 1@48 with adaptive knowledge distillation and learned
mixture weights; the final ensemble reached 96.4% accuracy on the 360 test
digits.
"""

from improve_nas.config import base_config


def get_config():
  c = base_config()
  c.dataset = "sklearn_digits"
  c.image_size = 8
  c.random_flip = False      # mirrored digits are other digits
  c.cutout_size = 0         # 8x8 digits: cutout and strong drop path slow
  c.drop_path_keep_prob = 0.8  # convergence in 200 steps
  c.max_iterations = 3
  c.steps_per_iteration = 200
  c.batch_size = 32
  c.generator = "dynamic"
  c.initial_arch = "1@48"
  c.width_increment = 48
  c.knowledge_distillation = "adaptive"
  c.learn_mixture_weights = True
  c.learning_rate = 0.05
  c.weight_decay = 1e-4
  c.save_summary_steps = 50
  return c
