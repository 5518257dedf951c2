r"""Deep linear networks :math:`f(x) = W_L \cdots W_1 x` at a true parameter of known rank.

The learning coefficient of a DLN whose true product has rank r is given in closed form by Aoyagi
(Neural Networks 172:106132, 2024, Thm. 1); :func:`slt.theory.dln`. That value is the *global* one,
attained at the most singular true parameters. The point built here is such a point: every layer has
rank exactly r and consecutive layers are aligned,

.. math:: W_l = U_l S_l U_{l-1}^\top,

with :math:`U_l` (:math:`H_l \times r`) orthonormal columns and :math:`S_l` well-conditioned r×r, so the
product is :math:`U_L (S_L\cdots S_1) U_0^\top` (for r = 0 every layer is zero). A generic factorisation
(say, full-rank hidden layers with a rank-r first layer) can have a *larger* local learning coefficient:
reduced-rank regression with M = N = H = 2, r = 0 has local λ = 2 at (A, B) = (I, 0), where the formula gives 3/2.

Which point: ``point="minimum"`` (default) places w* at the empirical minimizer of :math:`L_n` among
rank-r products (the reduced-rank regression solution, factorised in the same aligned, balanced way), a
critical point of :math:`L_n`. ``point="true"`` keeps the generating parameter, which is *not* a critical
point of :math:`L_n`: its gradient is :math:`O(n^{-1/2})`, the posterior drifts towards the minimizer, and
:math:`\hat\lambda` picks up a bias of about :math:`-t\,(L_n(w_0) - L_n(\hat w))`, which is
:math:`-O(\lambda/\log n)` at :math:`t = n/\log n` (measured: -6% to -9% at n = 10⁴, see
``benchmarks/RESULTS.md``). The LLC estimator assumes w* is a local minimum; use ``"true"`` to study that
effect.

Data: :math:`x \sim \mathcal N(0, I)`, :math:`y = W x + \varepsilon`, :math:`\varepsilon\sim\mathcal N(0,\sigma^2 I)`,
with per-example loss the Gaussian NLL :math:`\frac{1}{2\sigma^2}\lVert y - f(x)\rVert^2` (constant dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slt import theory
from slt._src import validate
from slt.models._problem import ReferenceProblem

__all__ = ["deep_linear_network", "dln_loss", "dln_forward"]


def dln_forward(params: Sequence[jax.Array], x: jax.Array) -> jax.Array:
    """Apply the layers ``params[0]`` (H_1 × H_0) … ``params[-1]`` (H_L × H_{L-1}) to rows of ``x``."""
    h = x
    for w in params:
        h = h @ w.T
    return h


def dln_loss(params, batch, noise_std: float = 1.0) -> jax.Array:
    """Batch mean of :math:`\\lVert y - f(x)\\rVert^2 / (2\\sigma^2)` for ``batch = (x, y)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from slt.models import dln_loss
        >>> params = [jnp.eye(2), 2 * jnp.eye(2)]  # f(x) = 2x
        >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> float(dln_loss(params, (x, 2 * x))), float(dln_loss(params, (x, jnp.zeros((2, 2)))))
        (0.0, 2.0)
    """
    x, y = batch
    residual = y - dln_forward(params, x)
    return 0.5 * jnp.mean(jnp.sum(jnp.square(residual), axis=-1)) / noise_std**2


def _orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((rows, max(cols, 1))))
    return q[:, :cols]


def deep_linear_network(
    widths: Sequence[int],
    rank: int,
    *,
    num_data: int = 10_000,
    seed: int = 0,
    noise_std: float = 1.0,
    singular_value_range: tuple[float, float] = (0.5, 1.5),
    point: str = "minimum",
    dtype=jnp.float32,
) -> ReferenceProblem:
    """A deep linear network at a most-singular true parameter of the given rank, with synthetic data.

    Args:
        widths: ``(H_0, H_1, ..., H_L)``: input, hidden and output widths (at least two entries).
        rank: r, the rank of the true product (0 ≤ r ≤ min(widths)).
        num_data: n.
        seed: seeds the true parameter and the data (numpy ``default_rng``), so the problem is reproducible.
        noise_std: σ of the output noise (also used in the loss).
        singular_value_range: each layer's r×r core has singular values uniform in this range.
        point: ``"minimum"`` (w* = empirical rank-r minimizer of L_n, a critical point) or ``"true"``
            (w* = the generating parameter); see the module docstring.

    Returns:
        :class:`ReferenceProblem` with ``params`` a list of L matrices (``params[l]`` is H_{l+1} × H_l),
        ``data = (x, y)`` and ``true_llc, multiplicity = slt.theory.dln(widths, rank)``.

    Example:
        >>> import slt
        >>> p = slt.models.deep_linear_network([2, 2, 2], 1, num_data=200, seed=0)
        >>> [w.shape for w in p.params], [a.shape for a in p.data]
        ([(2, 2), (2, 2)], [(200, 2), (200, 2)])
        >>> (p.true_llc, p.multiplicity) == slt.theory.dln([2, 2, 2], 1)
        True
    """
    widths = [int(h) for h in widths]
    lam, mult = theory.dln(widths, rank)  # validates widths and rank
    validate.positive_int(num_data, "num_data")
    if not noise_std > 0:
        raise ValueError(f"`noise_std` must be positive; got {noise_std!r}.")
    lo, hi = singular_value_range
    if not 0 < lo <= hi:
        raise ValueError(f"`singular_value_range` must satisfy 0 < low <= high; got {singular_value_range}.")
    if point not in ("minimum", "true"):
        raise ValueError(f"`point` must be 'minimum' or 'true'; got {point!r}.")
    rng = np.random.default_rng(seed)
    frames = [_orthonormal(rng, h, rank) for h in widths]
    params = []
    for l in range(len(widths) - 1):
        core = _orthonormal(rng, rank, rank) @ np.diag(rng.uniform(lo, hi, rank)) @ _orthonormal(rng, rank, rank).T
        params.append(frames[l + 1] @ core @ frames[l].T)
    product = np.eye(widths[0])
    for w in params:
        product = w @ product
    x = rng.standard_normal((num_data, widths[0]))
    y = x @ product.T + noise_std * rng.standard_normal((num_data, widths[-1]))
    x, y = (np.asarray(a, np.dtype(dtype)) for a in (x, y))
    if point == "minimum" and rank > 0:
        params = _rank_r_minimizer(x.astype(np.float64), y.astype(np.float64), widths, rank, rng)
    params = [jnp.asarray(w, dtype) for w in params]
    data = (jnp.asarray(x), jnp.asarray(y))
    loss_fn = dln_loss if noise_std == 1.0 else _ScaledDLNLoss(float(noise_std))
    return ReferenceProblem(loss_fn, params, data, lam, mult)


def _rank_r_minimizer(x, y, widths, rank, rng):
    r"""Aligned, balanced factorisation of the reduced-rank regression solution.

    With :math:`\hat W = Y^\top X (X^\top X)^{-1}` (least squares) and :math:`P` the projection onto the
    top-r eigenvectors of :math:`\hat W X^\top X \hat W^\top`, the minimizer of the squared error over
    rank-r matrices is :math:`P\hat W = U\,\mathrm{diag}(s)\,Z^\top`. Each layer gets
    :math:`\mathrm{diag}(s^{1/L})` between orthonormal frames; the gradient of :math:`L_n` vanishes there
    for every layer (it is annihilated by :math:`U^\top` on the left and by :math:`Z` on the right).
    """
    sxx = x.T @ x
    w_ols = np.linalg.solve(sxx, x.T @ y).T
    _, vecs = np.linalg.eigh(w_ols @ sxx @ w_ols.T)
    top = vecs[:, ::-1][:, :rank]
    u, s, zt = np.linalg.svd(top @ top.T @ w_ols)
    num_layers = len(widths) - 1
    frames = [zt[:rank].T] + [_orthonormal(rng, h, rank) for h in widths[1:-1]] + [u[:, :rank]]
    core = np.diag(s[:rank] ** (1.0 / num_layers))
    return [frames[l + 1] @ core @ frames[l].T for l in range(num_layers)]


class _ScaledDLNLoss:
    """``dln_loss`` with a fixed σ, hashable by value so that repeated problems share a compilation."""

    def __init__(self, noise_std: float):
        self.noise_std = noise_std

    def __call__(self, params, batch):
        return dln_loss(params, batch, self.noise_std)

    def __hash__(self):
        return hash(("dln_loss", self.noise_std))

    def __eq__(self, other):
        return isinstance(other, _ScaledDLNLoss) and other.noise_std == self.noise_std
