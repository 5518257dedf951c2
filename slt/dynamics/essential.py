r"""Essential dynamics: PCA of model outputs on a fixed probe set, stacked across checkpoints.

Let :math:`f_{w_t}(x_1), \dots, f_{w_t}(x_m)` be a model's outputs on a fixed probe set at checkpoint
:math:`t = 0, \dots, T-1`, flattened into a row :math:`y_t \in \mathbb R^F`. Centre the rows over checkpoints,
:math:`\bar Y = Y - \mathbf 1 \bar y^\top`, and take the thin SVD :math:`\bar Y = U S V^\top`. Then

* the *components* (PC scores) are :math:`U_{:, :k} S_{:k}` — the developmental trajectory seen in the
  :math:`k` directions of output space along which it moves most;
* the *loadings* are :math:`V_{:, :k}^\top` (unit vectors in output space);
* the explained-variance ratios are :math:`s_i^2 / \sum_j s_j^2`.

Hoogland et al., "Loss landscape degeneracy drives stagewise development in transformers" (arXiv 2402.02364,
TMLR 2025) read stage boundaries off this low-dimensional curve: its turning points and cusps, located with
osculating circles (:func:`osculating_curvature`, :func:`slt.dynamics.detect_turns`). Carroll et al.
(arXiv 2501.17745) do the same on a joint trajectory. Before reading stages into such a curve, check that it
is not the Lissajous figure any random walk draws under PCA: :func:`slt.dynamics.lissajous_diagnostic`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["EssentialDynamics", "essential_dynamics", "gaussian_smooth", "osculating_curvature"]


# ------------------------------------------------------------------------------------------- helpers
def _pyplot():
    from slt.plotting import _pyplot

    return _pyplot()


def _check_scale(value: Any, name: str, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        kind = "a positive number or None" if allow_none else "a positive number"
        raise ValueError(f"`{name}` must be {kind}; got {value!r}.") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
    return out


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


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
    """
    values = np.asarray(values, dtype=np.float64)
    scale = _check_scale(scale, "scale", allow_none=False)
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
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"`points` must be shaped (num_points, dims); got shape {p.shape}.")
    s = _check_positive_int(spacing, "spacing")
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


# ------------------------------------------------------------------------------------------- result
@dataclasses.dataclass
class EssentialDynamics:
    """Result of :func:`essential_dynamics`. T = number of checkpoints, k = components kept, F = features.

    Attributes:
        components: (T, k) PC scores: the trajectory in the top-k principal directions. Each component's sign
            is chosen so that its score at the last checkpoint is at least its score at the first (PC1 then
            runs forward in time); PCA itself leaves the sign arbitrary.
        explained_variance_ratio: (k,) share of the total variance (over checkpoints) each component carries.
        explained_variance: (k,) variance of each component's scores (ddof = 1).
        singular_values: (k,) the centred matrix's singular values.
        loadings: (k, F) unit principal directions in (flattened) output space.
        mean: (F,) the mean output over checkpoints (the centring).
        steps: (T,) training step of each checkpoint (``0..T-1`` if not given).
        smoothing: the Gaussian smoothing scale in checkpoints, or None.
        smoothed: (T, k) ``components`` smoothed with :func:`gaussian_smooth` at scale ``smoothing``; None
            without smoothing.
        output_shape: the trailing shape of one checkpoint's outputs (``loadings`` reshape to it).
    """

    components: np.ndarray
    explained_variance_ratio: np.ndarray
    explained_variance: np.ndarray
    singular_values: np.ndarray
    loadings: np.ndarray
    mean: np.ndarray
    steps: np.ndarray
    smoothing: float | None
    smoothed: np.ndarray | None
    output_shape: tuple[int, ...]

    def save(self, path, *, overwrite: bool = False) -> None:
        """Write this result to the Zarr directory ``path``; :func:`slt.load` reads it back (format:
        :mod:`slt._src.results`)."""
        from slt._src.results import save

        save(self, path, overwrite=overwrite)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[1])

    def curve(self, pcs: Sequence[int] = (0, 1), smoothed: bool = True) -> np.ndarray:
        """The (T, len(pcs)) curve of the chosen components (smoothed ones if available and asked for)."""
        pcs = tuple(int(i) for i in pcs)
        if not pcs or min(pcs) < 0 or max(pcs) >= self.n_components:
            raise ValueError(f"`pcs` must index components 0..{self.n_components - 1}; got {pcs}.")
        source = self.smoothed if (smoothed and self.smoothed is not None) else self.components
        return source[:, list(pcs)]

    def curvature(self, pcs: Sequence[int] = (0, 1), spacing: int = 1, smoothed: bool = True):
        """Osculating-circle curvature and turning angle along the PC curve ``pcs``.

        See :func:`osculating_curvature`; returns ``(curvature, angle)``, each (T,).
        """
        return osculating_curvature(self.curve(pcs, smoothed), spacing)

    def detect_turns(self, pcs: Sequence[int] = (0, 1), **kwargs):
        """Sharp turns and cusps of the raw PC curve ``pcs`` (:func:`slt.dynamics.detect_turns`)."""
        from slt.dynamics.stages import detect_turns

        return detect_turns(self.components[:, list(pcs)], self.steps, **kwargs)

    def plot(self, pairs: Sequence[tuple[int, int]] = ((0, 1), (0, 2), (1, 2)), *, cmap: str = "viridis"):
        """PC pairs against each other, points coloured by training step; returns the figure.

        Pairs naming a component beyond ``n_components`` are skipped. The smoothed curve, if any, is drawn
        as a line over the raw scores.
        """
        plt = _pyplot()
        pairs = [tuple(p) for p in pairs if max(p) < self.n_components]
        if not pairs:
            raise ValueError(f"no pair in `pairs` is within the {self.n_components} components.")
        fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs) + 0.8, 4.0), constrained_layout=True)
        axes = np.atleast_1d(axes)
        for ax, (i, j) in zip(axes, pairs):
            ax.plot(self.components[:, i], self.components[:, j], color="0.8", lw=0.8, zorder=1)
            sc = ax.scatter(self.components[:, i], self.components[:, j], c=self.steps, cmap=cmap, s=14, zorder=2)
            if self.smoothed is not None:
                ax.plot(self.smoothed[:, i], self.smoothed[:, j], color="k", lw=1.2, zorder=3)
            ax.set_xlabel(f"PC{i + 1} ({100 * self.explained_variance_ratio[i]:.1f}%)")
            ax.set_ylabel(f"PC{j + 1} ({100 * self.explained_variance_ratio[j]:.1f}%)")
        fig.colorbar(sc, ax=list(axes), label="step")
        return fig


# ------------------------------------------------------------------------------------------- compute
def essential_dynamics(
    outputs: Any, *, n_components: int = 3, smoothing: float | None = None, steps: Any = None
) -> EssentialDynamics:
    r"""PCA of model outputs on a fixed probe set across checkpoints ("essential dynamics").

    Args:
        outputs: (T, ...) outputs of each of T checkpoints on the same probe inputs (numpy or JAX); all
            trailing axes are flattened into F features.
        n_components: number k of components to keep (capped at ``min(T, F)``).
        smoothing: if given, the standard deviation in checkpoints of a Gaussian local-linear smoother
            (:func:`gaussian_smooth`) applied to each component curve, stored in ``smoothed``.
        steps: (T,) training step of each checkpoint; defaults to ``0..T-1``. Only used to colour plots and to
            report positions.

    Returns:
        :class:`EssentialDynamics`.

    The SVD is of the (T, F) centred matrix, so it costs :math:`O(T^2 F)` for F ≥ T and needs nothing
    larger than the data itself.
    """
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim < 2:
        raise ValueError(f"`outputs` must be shaped (num_checkpoints, ...) with features; got shape {y.shape}.")
    num_checkpoints = y.shape[0]
    if num_checkpoints < 3:
        raise ValueError(f"`outputs` needs at least 3 checkpoints; got {num_checkpoints}.")
    output_shape = tuple(y.shape[1:])
    y = y.reshape(num_checkpoints, -1)
    if not np.all(np.isfinite(y)):
        raise ValueError("`outputs` contains NaN or infinite values.")
    k = _check_positive_int(n_components, "n_components")
    smoothing = _check_scale(smoothing, "smoothing")
    if steps is None:
        steps_arr = np.arange(num_checkpoints, dtype=np.float64)
    else:
        steps_arr = np.asarray(steps, dtype=np.float64).reshape(-1)
        if steps_arr.shape[0] != num_checkpoints:
            raise ValueError(
                f"`steps` must have one entry per checkpoint ({num_checkpoints}); got {steps_arr.shape[0]}."
            )

    mean = y.mean(axis=0)
    centred = y - mean
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(k, s.shape[0])
    total = float(np.sum(s**2))
    if total <= 0.0:
        raise ValueError("`outputs` are identical at every checkpoint: there is no dynamics to analyse.")
    scores = u[:, :k] * s[:k]
    loadings = vt[:k]
    flip = np.where(scores[-1] < scores[0], -1.0, 1.0)
    scores = scores * flip
    loadings = loadings * flip[:, None]
    smoothed = gaussian_smooth(scores, smoothing) if smoothing is not None else None
    return EssentialDynamics(
        components=scores,
        explained_variance_ratio=s[:k] ** 2 / total,
        explained_variance=s[:k] ** 2 / (num_checkpoints - 1),
        singular_values=s[:k].copy(),
        loadings=loadings,
        mean=mean.reshape(output_shape),
        steps=steps_arr,
        smoothing=smoothing,
        smoothed=smoothed,
        output_shape=output_shape,
    )
