"""Ready-made per-batch losses on model outputs, for the model forms of :func:`slt.estimate_llc`.

Each function has the signature ``loss(outputs, targets) -> scalar`` and returns the *mean over the batch*
of a per-example negative log-likelihood (up to an additive constant). The LLC is defined through the
negative log-likelihood :math:`L_n(w) = -\\frac1n \\sum_i \\log p(y_i | x_i, w)`; a loss that is a positive
multiple of it (for instance the common mean-squared error) rescales the effective inverse temperature.

Each built-in loss declares how its targets are shaped against the outputs in an attribute ``targets_shape``:
``"same"`` (elementwise losses: the targets have the outputs' shape) or ``"labels"`` (integer class labels of
the outputs' shape without the last axis, or one-hot / probability vectors of the outputs' shape). The model
adapters of :mod:`slt.targets` check the model's outputs against the targets with :func:`check_shapes` once,
when the target is built, so that a shape mismatch that would broadcast silently is an error instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_shapes", "cross_entropy", "gaussian_nll", "mse"]


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


gaussian_nll.targets_shape = "same"
mse.targets_shape = "same"
cross_entropy.targets_shape = "labels"

_TARGETS_SHAPES = ("same", "labels", "any")


def _name(loss: Callable) -> str:
    return getattr(loss, "__qualname__", None) or getattr(loss, "__name__", None) or type(loss).__name__


def check_shapes(loss: Callable, outputs: Any, targets: Any) -> None:
    """Refuse model outputs and targets whose shapes ``loss(outputs, targets)`` would broadcast silently.

    ``outputs`` and ``targets`` are arrays or ``jax.ShapeDtypeStruct`` s (anything with ``shape`` and
    ``dtype``); when either is a pytree of several arrays, the loss alone knows how they pair up and nothing is
    checked. The rule is the loss's attribute ``targets_shape``:

    * ``"same"`` (:func:`gaussian_nll`, :func:`mse`): the shapes must be equal.
    * ``"labels"`` (:func:`cross_entropy`): targets of shape ``outputs.shape[:-1]`` (class indices) or
      ``outputs.shape`` (one-hot or probabilities).
    * ``"any"``: nothing is checked (set it on your own loss to accept any shapes).
    * no attribute (a loss of your own): only what is surely a silent broadcast is refused: floating-point
      targets whose shape differs from the outputs', is not ``outputs.shape[:-1]``, and broadcasts against
      it to a different number of elements (targets ``(n, 1)`` against outputs ``(n, 3)``, or ``(n,)``
      against ``(n, 1)``). Integer targets (class indices, in whatever layout the loss indexes with) and
      shapes that do not broadcast at all (the loss may reshape them) pass. A broadcast across the batch
      axis that passes here is caught later by the check that the loss is a batch mean
      (:func:`slt.targets.check_loss_at_center`).

    Raises:
        ValueError: naming the loss, both shapes and the fix.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> slt.losses.check_shapes(slt.losses.gaussian_nll, jnp.zeros((4, 3)), jnp.zeros((4, 3)))
        >>> slt.losses.check_shapes(slt.losses.cross_entropy, jnp.zeros((4, 3)), jnp.zeros(4, int))
        >>> slt.losses.check_shapes(slt.losses.gaussian_nll, jnp.zeros((4, 3)), jnp.zeros((4, 1)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `loss` gaussian_nll got outputs of shape (4, 3) and targets of shape (4, 1), which would ...
    """
    if not (hasattr(outputs, "shape") and hasattr(targets, "shape")):
        return
    rule = getattr(loss, "targets_shape", None)
    if rule is not None and rule not in _TARGETS_SHAPES:
        raise ValueError(f"`loss.targets_shape` is {rule!r}; expected one of {_TARGETS_SHAPES}.")
    out, tgt = tuple(outputs.shape), tuple(targets.shape)
    if rule == "any" or out == tgt:
        return
    labels = len(out) >= 1 and tgt == out[:-1]
    try:
        broadcast: tuple | None = tuple(np.broadcast_shapes(out, tgt))
    except ValueError:
        broadcast = None
    got = f"`loss` {_name(loss)} got outputs of shape {out} and targets of shape {tgt}"
    if rule == "labels":
        if labels:
            return
        hint = " (drop the labels' last axis of size 1)" if tgt == out[:-1] + (1,) else ""
        raise ValueError(
            f"{got}; it expects integer class labels of shape {out[:-1]}{hint} or one-hot / probability "
            f"vectors of shape {out}."
        )
    got += f", which would broadcast to {broadcast}" if broadcast is not None else ""
    if rule == "same":
        fix = f"reshape the targets to {out}" if math.prod(out) == math.prod(tgt) else f"give targets of shape {out}"
        raise ValueError(
            f"{got}; it compares them elementwise, so the targets must have the outputs' shape: {fix}, or "
            f"change the model's output to shape {tgt}."
        )
    floating = np.issubdtype(np.dtype(targets.dtype), np.inexact)
    if labels or broadcast is None or not floating:
        return
    if math.prod(broadcast) != math.prod(out) or math.prod(broadcast) != math.prod(tgt):
        raise ValueError(
            f"{got}: reshape the targets to the outputs' shape {out} (or change the model's output to {tgt}). "
            "If the loss is meant to take these shapes, declare it with `loss.targets_shape = 'any'`."
        )
