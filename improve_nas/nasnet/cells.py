"""NASNet-A normal and reduction cells.

A cell takes the outputs of the two previous cells. State 0 is the previous
cell's output (h_i), state 1 the older one (h_{i-1}), both first brought to the
cell's filter count (the order of TF-slim's NASNet-A, whose `hiddenstate_indices`
the tables follow). Each of the 5 blocks applies one op to each of two states
and adds the results into a new state. The cell outputs the concatenation of
the states no block consumed (for the normal cell: state 1, the older input,
and the 5 new ones).

The op tables are in improve_nas/nasnet/arch.py.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from improve_nas.nasnet import ops
# The op tables live with the arch specs, which import no TensorFlow.
from improve_nas.nasnet.arch import CellSpec, NORMAL_CELL, REDUCTION_CELL

__all__ = ["CellSpec", "NORMAL_CELL", "REDUCTION_CELL", "Cell"]


class Cell(tf.keras.layers.Layer):
  """One NASNet-A cell with drop path.

  Args:
    spec: NORMAL_CELL or REDUCTION_CELL.
    filters: filters of every state in this cell.
    strides: 2 for a reduction cell (applied to ops reading states 0 and 1).
    cell_index: position of the cell among all cells (normal and reduction).
    total_cells: number of cells in the tower (normal and reduction).
    drop_path_keep_prob: keep probability of the last cell at the end of the
      schedule.
  """

  def __init__(self, spec: CellSpec, filters: int, strides: int,
               cell_index: int, total_cells: int, drop_path_keep_prob: float,
               **kwargs):
    super().__init__(**kwargs)
    self.spec = spec
    self.filters = filters
    self.strides = strides
    # Share of the drop rate this cell gets: deeper cells drop more.
    self.drop_scale = (cell_index + 1) / total_cells * (1 - drop_path_keep_prob)
    self.drop_path = ops.DropPath(name="drop_path")
    self.block_ops = []
    for b, (left, left_state, right, right_state) in enumerate(spec.blocks):
      pair = []
      for side, op, state in (("left", left, left_state),
                              ("right", right, right_state)):
        op_strides = strides if state < 2 else 1
        pair.append((op, state, ops.make_op(op, filters, op_strides,
                                            f"block{b}_{side}_{op}")))
      self.block_ops.append(pair)
    self.prev_proj = ops.ReluConvBn(filters, name="prev_1x1")
    self.older_proj = None

  def build(self, input_shape: Sequence[tf.TensorShape]):
    older_shape, prev_shape = [tf.TensorShape(s) for s in input_shape]
    if older_shape[1] != prev_shape[1]:
      self.older_proj = _ReluFactorizedReduction(self.filters,
                                                 name="older_reduce")
    elif older_shape[-1] != self.filters:
      self.older_proj = ops.ReluConvBn(self.filters, name="older_1x1")
    super().build(input_shape)

  def keep_prob(self, progress) -> tf.Tensor:
    """Drop-path keep probability at schedule progress in [0, 1]."""
    return 1.0 - self.drop_scale * tf.clip_by_value(
        tf.cast(progress, tf.float32), 0.0, 1.0)

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None, progress=1.0, seed=None):
    older, prev = inputs
    if self.older_proj is not None:
      older = self.older_proj(older, training=training)
    states = [self.prev_proj(prev, training=training), older]
    keep_prob = self.keep_prob(progress)
    for b, pair in enumerate(self.block_ops):
      outs = []
      for side, (op, state, layer) in enumerate(pair):
        net = states[state]
        if layer is not None:
          net = layer(net, training=training)
        if op != "id":
          site = None if seed is None else (
              tf.random.experimental.stateless_fold_in(seed, 2 * b + side))
          net = self.drop_path(net, keep_prob, training=training, seed=site)
        outs.append(net)
      states.append(outs[0] + outs[1])
    return tf.concat([states[i] for i in self.spec.outputs], axis=-1)


class _ReluFactorizedReduction(tf.keras.layers.Layer):

  def __init__(self, filters: int, **kwargs):
    super().__init__(**kwargs)
    self.reduce = ops.FactorizedReduction(filters, name="factorized")

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    return self.reduce(tf.nn.relu(inputs), training=training)
