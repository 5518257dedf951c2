r"""Geometry of curves over training: Gaussian local linear regression and osculating-circle curvature.

:func:`local_linear_fit` fits :math:`a_i + b_i (x - x_i)` around every point with Gaussian weights of scale h
(a smoother unbiased for linear trends, with the standard errors of level and slope); :func:`gaussian_smooth`
keeps its level. :func:`osculating_curvature` is the curvature :math:`1/R_i` of the circle through
:math:`p_{i-s}, p_i, p_{i+s}` and the turning angle there, the measure Hoogland et al. (arXiv 2402.02364) use
for the turns and cusps of an essential-dynamics curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slt._src import validate

__all__ = ["gaussian_smooth", "local_linear_fit", "osculating_curvature"]


def local_linear_fit(x: np.ndarray, y: np.ndarray, scale: float) -> tuple[np.ndarray, ...]:
    r"""Gaussian-kernel local linear regression of ``y`` on ``x``, evaluated at every ``x_i``.

    At each :math:`x_i` fit :math:`a_i + b_i (x - x_i)` by least squares with weights
    :math:`w_{ij} = \exp(-(x_j - x_i)^2 / 2h^2)`, :math:`h` = ``scale``. Unlike a plain moving average it is
    unbiased for linear trends, also at the two ends and for non-uniform ``x``. Both estimates are linear in
    ``y``: :math:`a_i = \sum_j \ell_{ij} y_j`, :math:`b_i = \sum_j m_{ij} y_j`, so with independent noise of
    standard deviation :math:`\sigma` their standard errors are :math:`\sigma\lVert\ell_{i\cdot}\rVert` and
    :math:`\sigma\lVert m_{i\cdot}\rVert`.

    Weights beyond 6h (below 1e-7 of the peak) are dropped, so the cost is O(N × points within 6h).

    Args:
        x: (N,) increasing positions.
        y: (N, ...) values; trailing axes are smoothed independently.
        scale: kernel standard deviation :math:`h`, in the units of ``x``.

    Returns:
        ``(level, slope, level_weight_norm, slope_weight_norm)``: :math:`a` and :math:`b` shaped like ``y``,
        and :math:`\lVert\ell_{i\cdot}\rVert`, :math:`\lVert m_{i\cdot}\rVert` shaped (N,).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    flat = y.reshape(n, -1)
    level = np.empty_like(flat)
    slope = np.empty_like(flat)
    lnorm = np.empty(n)
    mnorm = np.empty(n)
    chunk = max(1, (1 << 20) // max(n, 1))
    reach = 6.0 * scale  # weights beyond 6 h are below 1e-7 of the peak: leave them out
    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        lo = int(np.searchsorted(x, x[rows.start] - reach, side="left"))
        hi = int(np.searchsorted(x, x[rows.stop - 1] + reach, side="right"))
        d = x[None, lo:hi] - x[rows, None]  # (rows, window)
        w = np.exp(-0.5 * (d / scale) ** 2)
        s0 = w.sum(1)
        s1 = (w * d).sum(1)
        s2 = (w * d * d).sum(1)
        det = s0 * s2 - s1**2
        # With (almost) a single point in reach the slope is undetermined: fall back to a local mean.
        det = np.maximum(det, 1e-12 * s0 * s2 + 1e-300)
        lw = w * (s2[:, None] - s1[:, None] * d) / det[:, None]
        mw = w * (s0[:, None] * d - s1[:, None]) / det[:, None]
        level[rows] = lw @ flat[lo:hi]
        slope[rows] = mw @ flat[lo:hi]
        lnorm[rows] = np.sqrt((lw**2).sum(1))
        mnorm[rows] = np.sqrt((mw**2).sum(1))
    return level.reshape(y.shape), slope.reshape(y.shape), lnorm, mnorm


def gaussian_smooth(values: Any, scale: float, positions: Any = None) -> np.ndarray:
    """Smooth ``values`` (N, ...) along axis 0 with a Gaussian kernel of standard deviation ``scale``.

    The smoother is local linear regression (:func:`local_linear_fit`), so straight stretches and the ends
    of a curve are not pulled inward as a moving average would pull them. ``positions`` (N,) default to
    ``0, 1, ..., N-1``; ``scale`` is in their units.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import gaussian_smooth
        >>> line = 2.0 * np.arange(20.0)
        >>> bool(np.allclose(gaussian_smooth(line, 3.0), line))  # straight stretches and ends stay put
        True
        >>> noisy = line + np.random.default_rng(0).normal(size=20)
        >>> bool(np.abs(gaussian_smooth(noisy, 3.0) - line).mean() < np.abs(noisy - line).mean())
        True
    """
    values = np.asarray(values, dtype=np.float64)
    scale = validate.positive_float(scale, "scale")
    x = np.arange(values.shape[0], dtype=np.float64) if positions is None else np.asarray(positions, np.float64)
    return local_linear_fit(x, values, scale)[0]


def osculating_curvature(points: Any, spacing: int = 1) -> tuple[np.ndarray, np.ndarray]:
    r"""Curvature and turning angle along a curve in :math:`\mathbb R^k` from osculating circles.

    At point :math:`i` take the circle through :math:`p_{i-s}, p_i, p_{i+s}` (:math:`s` = ``spacing``). With
    :math:`u = p_i - p_{i-s}`, :math:`v = p_{i+s} - p_i`, its radius is the circumradius of the triangle, so
    the curvature is

    .. math::

        \kappa_i = \frac{1}{R_i} = \frac{4\,\mathrm{Area}}{|u|\,|v|\,|u + v|}
                 = \frac{2\sqrt{|u|^2 |v|^2 - (u\cdot v)^2}}{|u|\,|v|\,|u + v|},

    which is finite for a cusp (the path doubling back: :math:`\kappa \to 2/|u|`) and zero on a straight
    stretch. The turning angle :math:`\theta_i = \arccos(u\cdot v / |u||v|) \in [0, \pi]` is the scale-free
    companion: 0 straight on, :math:`\pi/2` a right-angle corner, :math:`\pi` a cusp. Smooth the curve first
    (:func:`gaussian_smooth`): on raw noisy points both measure the noise.

    Args:
        points: (T, k) points in order, k ≥ 1.
        spacing: :math:`s`, in points.

    Returns:
        ``(curvature, angle)``, each (T,), NaN within ``spacing`` of either end and where a chord has zero
        length (the curve did not move).

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import osculating_curvature
        >>> t = np.linspace(0, np.pi, 50)
        >>> circle = 2.0 * np.stack([np.cos(t), np.sin(t)], axis=1)  # radius 2
        >>> curvature, angle = osculating_curvature(circle, spacing=2)
        >>> bool(np.allclose(curvature[2:-2], 0.5)), bool(np.isnan(curvature[:2]).all())
        (True, True)
        >>> line = np.stack([np.arange(10.0), 2 * np.arange(10.0)], axis=1)
        >>> curvature, angle = osculating_curvature(line)
        >>> bool(np.allclose(curvature[1:-1], 0)), bool(np.allclose(angle[1:-1], 0, atol=1e-6))  # straight on
        (True, True)
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"`points` must be shaped (num_points, dims); got shape {p.shape}.")
    s = validate.positive_int(spacing, "spacing")
    n = p.shape[0]
    curvature = np.full(n, np.nan)
    angle = np.full(n, np.nan)
    if n <= 2 * s:
        return curvature, angle
    u = p[s:-s] - p[: -2 * s]
    v = p[2 * s :] - p[s:-s]
    uu, vv, uv = (u * u).sum(1), (v * v).sum(1), (u * v).sum(1)
    ww = (u + v) ** 2
    ww = ww.sum(1)
    cross = np.sqrt(np.maximum(uu * vv - uv**2, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        # |u + v| -> 0 at an exact cusp: the circle's diameter is then |u| and kappa = 2 / |u|.
        k = np.where(ww > 1e-24 * (uu + vv), 2.0 * cross / np.sqrt(uu * vv * ww), 2.0 / np.sqrt(uu))
        cos = np.clip(uv / np.sqrt(uu * vv), -1.0, 1.0)
    moved = (uu > 0) & (vv > 0)
    curvature[s:-s] = np.where(moved, k, np.nan)
    angle[s:-s] = np.where(moved, np.arccos(cos), np.nan)
    return curvature, angle
