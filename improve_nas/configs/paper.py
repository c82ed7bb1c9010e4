"""The paper's experiments: every row of Table 1 and the two baselines.

One config family; the argument after the colon picks dataset and row:

    improve-nas --config=paper:DATASET,ROW \
        --config.data_dir=DIR --model_dir=runs/DATASET-ROW

DATASET is cifar10 or cifar100 (prepared in DIR; see the README's Datasets
section). All rows train every member for 1M steps of batch 32 with momentum
0.9, lr 0.025 with cosine decay restarting each iteration, gradient clipping
at norm 5, weight decay 5e-4, label smoothing 0.1, drop path 0.6, auxiliary
head 0.4, and the paper's augmentation (pad 4, crop, flip, Cutout 16).

Paper's test error (%) per row, CIFAR-10 / CIFAR-100:

  ROW          what it runs                                       C-10   C-100
  nokd         10 x 6@768, uniform weights, no KD                 2.29   14.58
  akd          10 x 6@768, uniform weights, adaptive KD           2.30   14.94
  ban          10 x 6@768, uniform weights, born-again KD         2.37   15.03
  w_nokd       10 x 6@768, learned weights, no KD                 2.35   14.87
  w_akd        10 x 6@768, learned weights, adaptive KD           2.26   14.83
  gd6_nokd     dynamic generator from 6@768, no KD, 33M budget    3.23   16.10
  gd1_nokd     dynamic generator from 1@240, no KD, 33M budget    3.06   15.55
  gd6_akd      dynamic generator from 6@768, adaptive KD, 33M     3.09   16.96
  gd1_akd      dynamic generator from 1@240, adaptive KD, 33M     3.10   15.31
  nasnet_6x768 one NASNet-A(6@768) tower (3.3M parameters)        2.65   17.58
  nasnet_7x2304 one NASNet-A(7@2304) tower (32.6M parameters)     2.40   17.70

The 6@768 baseline is the NASNet-A paper's figure (the AdaNAS paper
reproduced 2.78 on CIFAR-10); the CIFAR-100 baselines are the AdaNAS paper's
reproductions (17.58 and 17.70). The Table 1
ensembles hold 10 members of 6@768, about 33M parameters.

Add `--config.quick=True` to any of them for a smoke run: a few steps on tiny
towers and images, two iterations at most (see config.apply_quick).

Example, the paper's best CIFAR-10 row:

    improve-nas --config=paper:cifar10,w_akd \
        --config.data_dir=~/tensorflow_datasets --model_dir=runs/c10-w_akd
"""

from improve_nas.config import base_config
from improve_nas.errors import ConfigError

# row -> (fields that differ from base_config, CIFAR-10 error, CIFAR-100 error)
ROWS = {
    "nokd": (dict(knowledge_distillation="none"), 2.29, 14.58),
    "akd": (dict(knowledge_distillation="adaptive"), 2.30, 14.94),
    "ban": (dict(knowledge_distillation="born_again"), 2.37, 15.03),
    "w_nokd": (dict(knowledge_distillation="none",
                    learn_mixture_weights=True), 2.35, 14.87),
    "w_akd": (dict(knowledge_distillation="adaptive",
                   learn_mixture_weights=True), 2.26, 14.83),
    "gd6_nokd": (dict(generator="dynamic", initial_arch="6@768",
                      knowledge_distillation="none",
                      param_budget=33_000_000), 3.23, 16.10),
    "gd1_nokd": (dict(generator="dynamic", initial_arch="1@240",
                      knowledge_distillation="none",
                      param_budget=33_000_000), 3.06, 15.55),
    "gd6_akd": (dict(generator="dynamic", initial_arch="6@768",
                     knowledge_distillation="adaptive",
                     param_budget=33_000_000), 3.09, 16.96),
    "gd1_akd": (dict(generator="dynamic", initial_arch="1@240",
                     knowledge_distillation="adaptive",
                     param_budget=33_000_000), 3.10, 15.31),
    "nasnet_6x768": (dict(initial_arch="6@768", max_iterations=1), 2.65,
                     17.58),
    "nasnet_7x2304": (dict(initial_arch="7@2304", max_iterations=1), 2.40,
                      17.70),
}
DATASETS = ("cifar10", "cifar100")


def paper_error(dataset: str, row: str) -> float:
  """The paper's test error (%) for `row` on `dataset`."""
  _, cifar10, cifar100 = ROWS[row]
  return cifar10 if dataset == "cifar10" else cifar100


def get_config(arg: str = "cifar10,w_akd"):
  dataset, _, row = (arg or "").partition(",")
  if dataset not in DATASETS or row not in ROWS:
    raise ConfigError(
        f"paper config {arg!r}: use DATASET,ROW with DATASET one of "
        f"{', '.join(DATASETS)} and ROW one of {', '.join(ROWS)}, e.g. "
        "--config=paper:cifar10,w_akd")
  c = base_config()
  c.dataset = dataset
  c.generator = "constant"
  c.initial_arch = "6@768"
  c.max_iterations = 10
  c.steps_per_iteration = 1_000_000
  fields, _, _ = ROWS[row]
  for key, value in fields.items():
    c[key] = value
  return c
