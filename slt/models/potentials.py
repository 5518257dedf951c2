r"""Normal-crossing potentials :math:`K(w) = \prod_i w_i^{2k_i}` at w* = 0.

With a flat prior, :math:`\lambda = \min_i 1/(2k_i)` and m is the number of indices attaining it
(Watanabe, *Algebraic Geometry and Statistical Learning Theory*, 2009). The "loss" is :math:`L_n(w) = K(w)`,
independent of the data; a dummy data array of length n carries the data size (and so the default
nβ = n/log n).

For one coordinate, :math:`K = w^{2k}`, the tempered posterior mean is exact:
:math:`\mathbb E_t[tK] = 1/(2k)` for every t (flat prior on the real line); with a Gaussian localizing
prior, the exact value is a one-dimensional integral (:func:`normal_crossing_llc_exact`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from slt import theory
from slt._src import validate
from slt.models._problem import ReferenceProblem

__all__ = ["normal_crossing", "normal_crossing_llc_exact"]


class _NormalCrossingLoss:
    """:math:`\\prod_i w_i^{2k_i}`; hashable by its powers so equal problems share a compilation."""

    def __init__(self, powers: tuple[int, ...]):
        self.powers = powers

    def __call__(self, w, batch):
        del batch
        return jnp.prod(jnp.stack([w[i] ** (2 * k) for i, k in enumerate(self.powers)]))

    def __hash__(self):
        return hash(("normal_crossing", self.powers))

    def __eq__(self, other):
        return isinstance(other, _NormalCrossingLoss) and other.powers == self.powers


def normal_crossing(powers: Sequence[int], *, num_data: int = 10_000, dtype=jnp.float32) -> ReferenceProblem:
    """The potential :math:`K(w) = \\prod_i w_i^{2k_i}` at w* = 0 with ``powers = (k_1, ..., k_d)``.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> p = slt.models.normal_crossing([1, 2], num_data=1000)  # K = x^2 y^4: λ = min(1/2, 1/4)
        >>> p.true_llc, p.multiplicity, p.params.shape
        (Fraction(1, 4), 1, (2,))
        >>> float(p.loss_fn(jnp.array([2.0, 1.0]), p.data))  # the data only carry n
        4.0
    """
    powers = tuple(int(k) for k in powers)
    lam, mult = theory.normal_crossing(powers)
    validate.int_at_least(num_data, "num_data", 2)
    return ReferenceProblem(
        _NormalCrossingLoss(powers),
        jnp.zeros(len(powers), dtype),
        jnp.zeros((num_data, 1), dtype),
        lam,
        mult,
    )


def normal_crossing_llc_exact(power: int, nbeta: float, localization: float, grid: int = 200_001) -> float:
    r"""Exact :math:`t\,\mathbb E[w^{2k}]` under :math:`p(w)\propto e^{-t w^{2k} - \gamma w^2/2}` (1-D quadrature).

    With ``localization = 0`` this is exactly :math:`1/(2k)`.
    """
    t, gamma = float(nbeta), float(localization)
    width = 12.0 * t ** (-1.0 / (2 * power))  # t·w^{2k} = 12^{2k} there: no mass beyond
    w = np.linspace(-width, width, grid)
    logp = -t * w ** (2 * power) - 0.5 * gamma * w**2
    p = np.exp(logp - logp.max())
    return float(t * np.sum(w ** (2 * power) * p) / np.sum(p))
