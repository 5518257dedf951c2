r"""Regular linear regression at its empirical minimizer: :math:`\lambda = d/2` with an exact finite-β value.

Model :math:`y = w^\top x + \mathcal N(0, 1)`, per-example loss :math:`\frac12 (y - w^\top x)^2`. The point
w* is the least-squares solution, the exact minimizer of :math:`L_n`, so :math:`L_n` is exactly the
quadratic :math:`L_n(w^*) + \frac12 (w-w^*)^\top H (w-w^*)` with :math:`H = X^\top X / n`, and the localized
posterior is Gaussian. With :math:`t = n\beta` and Hessian eigenvalues :math:`h_i`,

.. math:: n\beta\,(\mathbb E[L_n] - L_n(w^*)) = \sum_i \frac{t h_i}{2 (t h_i + \gamma)} \to d/2,

and full-batch SGLD with step ε has the stationary value
:math:`\sum_i t h_i / [2 c_i (1 - \varepsilon c_i / 4)]`, :math:`c_i = t h_i + \gamma`: along eigendirection i a step is
the AR(1) recursion :math:`u \leftarrow (1 - \varepsilon c_i/2) u + \sqrt\varepsilon\,\xi`, of stationary variance
:math:`1 / (c_i (1 - \varepsilon c_i/4))`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from slt import theory
from slt._src import validate
from slt.models._problem import ReferenceProblem

__all__ = ["linear_regression", "linreg_loss", "quadratic_llc"]


def linreg_loss(w, batch):
    """Batch mean of :math:`\\frac12 (y - x^\\top w)^2` for ``batch = (x, y)``."""
    x, y = batch
    return 0.5 * jnp.mean(jnp.square(y - x @ w))


def linear_regression(
    num_features: int, *, num_data: int = 10_000, seed: int = 0, dtype=jnp.float32
) -> ReferenceProblem:
    """Linear regression with ``num_features`` standard-normal inputs, at the least-squares solution.

    ``params`` is the weight vector w* (``num_features``,), ``data = (x, y)``; ``true_llc = d/2``.
    The Hessian of :math:`L_n` is ``x.T @ x / n`` (see :func:`quadratic_llc`).

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> p.params.shape, [a.shape for a in p.data], p.true_llc
        ((2,), [(200, 2), (200,)], Fraction(1, 1))
        >>> grad = jax.grad(p.loss_fn)(p.params, p.data)  # w* is the least-squares solution
        >>> bool(np.abs(grad).max() < 1e-4)
        True
    """
    validate.positive_int(num_features, "num_features")
    if not (isinstance(num_data, (int, np.integer)) and num_data >= num_features):
        raise ValueError(f"`num_data` must be an integer >= num_features; got {num_data!r}.")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_data, num_features))
    w_true = rng.standard_normal(num_features)
    y = x @ w_true + rng.standard_normal(num_data)
    x32 = np.asarray(x, dtype=np.dtype(dtype))
    y32 = np.asarray(y, dtype=np.dtype(dtype))
    # Solve in float64 on the arrays actually used, so w* is the minimizer of the loss as evaluated.
    w_star = np.linalg.lstsq(x32.astype(np.float64), y32.astype(np.float64), rcond=None)[0]
    lam, mult = theory.regular(num_features)
    return ReferenceProblem(linreg_loss, jnp.asarray(w_star, dtype), (jnp.asarray(x32), jnp.asarray(y32)), lam, mult)


def quadratic_llc(hessian_eigenvalues, nbeta: float, localization: float, step_size: float | None = None) -> float:
    r"""Exact :math:`n\beta(\mathbb E[L]-L^*)` for a quadratic loss; with ``step_size``, under full-batch SGLD.

    .. math:: \sum_i \frac{t h_i}{2 c_i (1 - \varepsilon c_i/4)}, \quad c_i = t h_i + \gamma

    (``step_size=None`` is the exact posterior, ε = 0). Lau et al. arXiv 2308.12108.
    """
    h = np.asarray(hessian_eigenvalues, dtype=np.float64)
    c = nbeta * h + localization
    eps = 0.0 if step_size is None else float(step_size)
    if np.any(eps * c >= 4):
        raise ValueError(f"full-batch SGLD is unstable: step_size · (nβ·h_max + γ) = {eps * c.max():.3g} >= 4.")
    return float(np.sum(nbeta * h / (2 * c * (1 - eps * c / 4))))
