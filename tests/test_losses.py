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


def test_built_in_losses_declare_their_targets_shape():
    assert losses.gaussian_nll.targets_shape == "same"
    assert losses.mse.targets_shape == "same"
    assert losses.cross_entropy.targets_shape == "labels"


@pytest.mark.parametrize("loss", [losses.gaussian_nll, losses.mse])
def test_elementwise_losses_refuse_targets_that_would_broadcast(loss):
    out = jax.ShapeDtypeStruct((10, 3), jnp.float32)
    losses.check_shapes(loss, out, jnp.zeros((10, 3)))
    with pytest.raises(
        ValueError,
        match=r"got outputs of shape \(10, 3\) and targets of shape \(10, 1\), which would "
        r"broadcast to \(10, 3\).*give targets of shape \(10, 3\)",
    ):
        losses.check_shapes(loss, out, jnp.zeros((10, 1)))
    with pytest.raises(ValueError, match=r"shape \(10,\).*reshape the targets to \(10, 1\)"):
        losses.check_shapes(loss, jax.ShapeDtypeStruct((10, 1), jnp.float32), jnp.zeros(10))


def test_cross_entropy_takes_labels_or_one_hot_and_refuses_other_shapes():
    out = jax.ShapeDtypeStruct((10, 3), jnp.float32)
    losses.check_shapes(losses.cross_entropy, out, jnp.zeros(10, jnp.int32))
    losses.check_shapes(losses.cross_entropy, out, jnp.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"labels of shape \(10,\) \(drop the labels' last axis"):
        losses.check_shapes(losses.cross_entropy, out, jnp.zeros((10, 1), jnp.int32))


def test_a_loss_of_ones_own_is_refused_only_for_a_sure_broadcast():
    def own(outputs, targets):
        return jnp.mean((outputs - targets) ** 2)

    out = jax.ShapeDtypeStruct((10, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"`loss` .*own got outputs of shape \(10, 3\) and targets of shape \(10, 1\)"):
        losses.check_shapes(own, out, jnp.zeros((10, 1)))
    with pytest.raises(ValueError, match=r"broadcast to \(10, 10\)"):  # the classic (n,) against (n, 1)
        losses.check_shapes(own, jax.ShapeDtypeStruct((10,), jnp.float32), jnp.zeros((10, 1)))
    losses.check_shapes(own, out, jnp.zeros((10, 3)))
    losses.check_shapes(own, out, jnp.zeros(10))  # class labels, or a loss that reduces the last axis
    losses.check_shapes(own, out, jnp.zeros((10, 1), jnp.int32))  # integer labels indexed by the loss
    losses.check_shapes(own, out, jnp.zeros((10, 5)))  # does not broadcast: the loss may reshape
    losses.check_shapes(own, (out, out), jnp.zeros((10, 1)))  # pytree outputs: not checked
    own.targets_shape = "any"
    losses.check_shapes(own, out, jnp.zeros((10, 1)))
    own.targets_shape = "bogus"
    with pytest.raises(ValueError, match="targets_shape"):
        losses.check_shapes(own, out, jnp.zeros((10, 3)))
