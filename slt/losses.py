"""Ready-made per-batch losses on model outputs, for the model forms of :func:`slt.estimate_llc`.

Each function has the signature ``loss(outputs, targets) -> scalar`` and returns the *mean over the batch*
of a per-example negative log-likelihood (up to an additive constant). The LLC is defined through the
negative log-likelihood :math:`L_n(w) = -\\frac1n \\sum_i \\log p(y_i | x_i, w)`; a loss that is a positive
multiple of it (for instance the common mean-squared error) rescales the effective inverse temperature.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["gaussian_nll", "mse", "cross_entropy"]


def _per_example_sum(x: jax.Array) -> jax.Array:
    """Sum over every axis but the leading (batch) one."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def gaussian_nll(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    r"""Gaussian negative log-likelihood with unit variance, without its constant.

    .. math:: \ell(\hat y, y) = \tfrac12 \lVert y - \hat y \rVert^2

    averaged over the batch (the leading axis) and summed over output dimensions. This is the exact
    NLL of the model :math:`y = f_w(x) + \mathcal N(0, I)`, so it is the loss to use when the LLC is to be
    compared with a learning coefficient derived for that model (e.g. the deep linear networks of
    :mod:`slt.models`).

    Example:
        >>> import jax.numpy as jnp, slt
        >>> outputs, targets = jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.zeros((2, 2))
        >>> float(slt.losses.gaussian_nll(outputs, targets))  # (0.5 * 5 + 0) / 2 examples
        1.25
    """
    return 0.5 * jnp.mean(_per_example_sum(jnp.square(outputs - targets)))


def mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    r"""Mean squared error over batch and output dimensions, :math:`\frac{1}{bk}\sum (y-\hat y)^2`.

    Equal to :func:`gaussian_nll` times ``2 / k`` for ``k`` output dimensions: an NLL at a different
    noise scale, so with the same ``nbeta`` the sampled posterior is sharper or flatter accordingly.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> outputs, targets = jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.zeros((2, 2))
        >>> float(slt.losses.mse(outputs, targets))  # 5 / (2 examples * 2 outputs)
        1.25
        >>> float(slt.losses.mse(outputs, targets)) == 2 / 2 * float(slt.losses.gaussian_nll(outputs, targets))
        True
    """
    return jnp.mean(jnp.square(outputs - targets))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Softmax cross-entropy, the NLL of a categorical model, averaged over the batch.

    ``labels`` are integer class indices of shape ``logits.shape[:-1]``, or one-hot / probability
    vectors of the same shape as ``logits``.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> logits = jnp.zeros((3, 4))  # uniform over 4 classes: log 4 per example
        >>> round(float(slt.losses.cross_entropy(logits, jnp.array([0, 1, 3]))), 4)
        1.3863
        >>> one_hot = jnp.eye(4)[jnp.array([0, 1, 3])]
        >>> bool(slt.losses.cross_entropy(logits, one_hot) == slt.losses.cross_entropy(logits, jnp.array([0, 1, 3])))
        True
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    if labels.shape == logits.shape:
        nll = -jnp.sum(labels * log_probs, axis=-1)
    else:
        nll = -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.mean(_per_example_sum(nll) if nll.ndim > 1 else nll)
