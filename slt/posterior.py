r"""The localized tempered posterior around w*.

.. math::

    p(w) \propto \exp\Big(-n\beta\, L_n(w) - \frac{\gamma}{2}\lVert w - w^*\rVert^2\Big)

with ``nbeta`` :math:`= n\beta` and ``localization`` :math:`= \gamma` (Lau et al., "The Local Learning
Coefficient", arXiv 2308.12108, eq. (11)). Samplers see its *potential* (negative log density)

.. math:: U_B(w) = n\beta\, L_B(w) + \frac{\gamma}{2}\lVert w - w^*\rVert^2,

estimated on a minibatch ``B``, and its gradient. Temperature enters only through ``nbeta`` on the
likelihood: the localizing prior is never tempered (blackjax's ``temperature`` argument would temper both,
which is why we do not use it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["LocalPosterior", "default_nbeta", "potential_gradient", "resolve_nbeta"]

PyTree = Any


def default_nbeta(num_data: int) -> float:
    r"""The inverse temperature :math:`n\beta^* = n / \log n` of Lau et al. (arXiv 2308.12108, Sec. 4).

    This is the WBIC temperature :math:`\beta^* = 1/\log n` (Watanabe 2013) with the *full* data size
    n. devinterp's default is ``batch_size / log(batch_size)``, a different (much smaller) value, so LLC
    numbers from the two libraries are only comparable when nβ is set explicitly and equal.

    Example:
        >>> import math, slt
        >>> round(slt.default_nbeta(1000), 2)
        144.76
        >>> slt.default_nbeta(1000) == 1000 / math.log(1000)
        True
    """
    if num_data < 2:
        raise ValueError(f"nbeta = n / log n needs n >= 2 data points; got n = {num_data}.")
    return num_data / math.log(num_data)


def resolve_nbeta(nbeta: float | None, num_data: int) -> float:
    """``nbeta`` as given, or :func:`default_nbeta` when ``None``; validated."""
    if nbeta is None:
        return default_nbeta(num_data)
    nbeta = float(nbeta)
    if not (math.isfinite(nbeta) and nbeta > 0):
        raise ValueError(f"`nbeta` must be a positive finite number (n·β); got {nbeta}.")
    return nbeta


def potential_gradient(loss_grad: PyTree, position: PyTree, center: PyTree, nbeta, localization) -> PyTree:
    r""":math:`n\beta\nabla L_B(w) + \gamma(w - w^*)` from the loss gradient, leaf by leaf in each leaf's dtype.

    The one place this formula lives: the kernels get it from :meth:`LocalPosterior.loss_and_grad`, the optax
    transforms (:mod:`slt.samplers._optax`) from the user's gradient of :math:`L_B`.

    Example:
        >>> import jax.numpy as jnp
        >>> potential_gradient(jnp.ones(2), jnp.array([1.0, 2.0]), jnp.zeros(2), 10.0, 0.5).tolist()
        [10.5, 11.0]
    """
    return jax.tree_util.tree_map(
        lambda g, w, c: (nbeta * g + localization * (w - c)).astype(w.dtype), loss_grad, position, center
    )


class LocalPosterior(NamedTuple):
    """Potential and gradient of the localized tempered posterior (pure; all fields are pytrees/callables).

    Attributes:
        loss: ``loss(position, frozen, batch) -> scalar`` (see :class:`slt.targets.Target`).
        center: w*, the localization centre (same structure as the position).
        frozen: leaves held fixed, passed through to ``loss``.
        nbeta: :math:`n\\beta`.
        localization: :math:`\\gamma`.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> def loss(position, frozen, batch):  # L(w) = |w|^2 / 2, no data
        ...     return 0.5 * jnp.sum(position**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> w = jnp.array([1.0, 0.0])
        >>> float(posterior.potential(w, None))  # 10 * 0.5 + 0.5 * 1
        5.5
        >>> value, grad = posterior.loss_and_grad(w, None)  # L(w) and 10 * w + 1 * (w - 0)
        >>> float(value), grad.tolist()
        (0.5, [11.0, 0.0])
    """

    loss: Callable
    center: PyTree
    frozen: PyTree
    nbeta: jax.Array
    localization: jax.Array

    def loss_and_grad(self, position: PyTree, batch: PyTree) -> tuple[jax.Array, PyTree]:
        r"""Minibatch loss :math:`L_B(w)` and the potential gradient :math:`n\beta\nabla L_B + \gamma(w-w^*)`.

        One forward and one backward pass; the loss comes from the same forward pass, so recording it
        costs nothing extra.
        """
        loss, grad = jax.value_and_grad(self.loss)(position, self.frozen, batch)
        return loss, potential_gradient(grad, position, self.center, self.nbeta, self.localization)

    def potential(self, position: PyTree, batch: PyTree) -> jax.Array:
        r""":math:`U_B(w) = n\beta L_B(w) + \frac\gamma2 \lVert w-w^*\rVert^2`."""
        sq = sum(
            jnp.sum(jnp.square(w - c))
            for w, c in zip(jax.tree_util.tree_leaves(position), jax.tree_util.tree_leaves(self.center))
        )
        return self.nbeta * self.loss(position, self.frozen, batch) + 0.5 * self.localization * sq
