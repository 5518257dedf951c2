from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt import losses


def test_gaussian_nll_is_half_sum_of_squares_averaged_over_batch():
    out = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    tgt = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    assert float(losses.gaussian_nll(out, tgt)) == pytest.approx(0.5 * (5.0 + 2.0) / 2)
    assert float(losses.mse(out, tgt)) == pytest.approx(7.0 / 4)


def test_cross_entropy_integer_and_one_hot_labels_agree():
    logits = jax.random.normal(jax.random.key(0), (5, 3))
    labels = jnp.array([0, 2, 1, 1, 0])
    a = losses.cross_entropy(logits, labels)
    b = losses.cross_entropy(logits, jax.nn.one_hot(labels, 3))
    expected = -np.mean(np.asarray(jax.nn.log_softmax(logits))[np.arange(5), np.asarray(labels)])
    assert float(a) == pytest.approx(expected, rel=1e-6)
    assert float(b) == pytest.approx(expected, rel=1e-6)
