"""The Keras engine's optimizer update: TF 1's momentum, as the adanet
engine's MomentumOptimizer applies it."""

import keras
import numpy as np
import tensorflow as tf

from improve_nas.keras_engine import training


def test_momentum_update_is_tf1_momentum_on_keras_and_tf_variables():
  weight = keras.Variable(np.array([1.0, -2.0], np.float32))
  bias = tf.Variable(np.array([0.5], np.float32))
  slots = [tf.Variable(tf.zeros([2])), tf.Variable(tf.zeros([1]))]
  expected_w, expected_b = np.array([1.0, -2.0]), np.array([0.5])
  accum_w, accum_b = np.zeros(2), np.zeros(1)
  for rate, grads in [(0.1, ([0.5, 1.0], [2.0])), (0.05, ([-1.0, 3.0], [1.0]))]:
    training._momentum([weight, bias],  # pylint: disable=protected-access
                       [tf.constant(grads[0]), tf.constant(grads[1])],
                       slots, tf.constant(rate), 0.9)
    accum_w = 0.9 * accum_w + np.array(grads[0])
    accum_b = 0.9 * accum_b + np.array(grads[1])
    expected_w -= rate * accum_w
    expected_b -= rate * accum_b
  np.testing.assert_allclose(weight.numpy(), expected_w, rtol=1e-6)
  np.testing.assert_allclose(bias.numpy(), expected_b, rtol=1e-6)
  np.testing.assert_allclose(slots[0].numpy(), accum_w, rtol=1e-6)


def test_a_missing_gradient_leaves_its_variable_alone():
  weight = tf.Variable([1.0])
  slot = tf.Variable([0.0])
  training._momentum([weight], [None], [slot], 0.1, 0.9)  # pylint: disable=protected-access
  assert weight.numpy().tolist() == [1.0] and slot.numpy().tolist() == [0.0]
