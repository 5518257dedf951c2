r"""Stage boundaries: critical points of a development curve, and sharp turns of an essential-dynamics curve.

Hoogland et al. (arXiv 2402.02364, TMLR 2025) divide training into stages at the critical points of the LLC
curve :math:`\hat\lambda(w_t)`: its turning points (a rise giving way to a fall or the reverse) and the starts
and ends of its plateaus. :func:`detect_stages` finds them in any scalar curve (LLC, loss, ...) so that noise
does not create them:

1. **Noise scale.** Each point is compared with the straight line through its two neighbours,
   :math:`r_i = y_i - \big(y_{i-1}(x_{i+1}-x_i) + y_{i+1}(x_i-x_{i-1})\big)/(x_{i+1}-x_{i-1})`, which
   cancels any local linear trend; with independent noise of standard deviation :math:`\sigma`,
   :math:`\mathrm{Var}\,r_i = \sigma^2(1 + a_i^2 + b_i^2)` (:math:`a_i, b_i` the two interpolation weights).
   :math:`\hat\sigma` is the RMS of the normalized :math:`r_i` after setting aside those beyond 4 × their
   MAD-based scale (:func:`noise_scale`: slopes, a few kinks and outliers do not inflate it; heavy-tailed
   noise is not underestimated as the MAD alone would), floored at ``noise_floor`` × the curve's range
   (default 1 %): on a (nearly) noiseless curve, level changes below ``min_change`` × 1 % of the range are
   not stages, and a staircase's treads count as plateaus although a sigmoid is never exactly flat.
2. **Outliers.** Worst first, an interior point more than 5 :math:`\hat\sigma` from the line through its
   neighbours is replaced by that line's value (a single wild checkpoint is not a stage).
3. **Smoothing.** Gaussian-kernel local linear regression with scale :math:`h` = ``smoothing`` (in the units of
   ``steps``; non-uniform steps are fine) gives a level :math:`a_i` and a slope :math:`b_i` at every point,
   and the standard error of the slope, :math:`\hat\sigma\lVert m_{i\cdot}\rVert`
   (:func:`slt.dynamics._geometry.local_linear_fit`).
4. **Classification.** A point is *rising* if :math:`b_i / \mathrm{SE}(b_i) >` ``threshold``, *falling*
   if below ``-threshold``, *flat* otherwise.
5. **Significance of stages.** Runs of equal class are stages, then cleaned until nothing changes: a rising or
   falling run whose level changes by less than ``min_change`` × :math:`\hat\sigma` becomes flat; a flat run
   whose level does change by that much and whose least-squares line has a significant slope
   (:math:`|t| >` ``threshold``) is a slow rise or fall (a gentle trend that no window of width h resolves);
   a flat run shorter than ``min_plateau`` is no plateau: at either end of the curve, or between two runs
   of the same sign, it joins its neighbour(s); between a rise and a fall it is a turning point, placed at
   the extremum of the smoothed curve.

The boundaries are then the turning points (extrema of the smoothed curve) and the edges of plateaus, each
refined by a continuous two-segment least-squares fit around it (smoothing shifts a corner by about h; the
two-segment fit puts a piecewise-linear corner back where it is). A
noisy flat curve gives one plateau and no boundary: a run of significant slopes must also move the level by
``min_change`` noise standard deviations, which the smoothed noise does not.

:func:`detect_turns` is the variant for essential-dynamics curves (PC scores over checkpoints): a turn or cusp
is where the smoothed curve's osculating circle is small (:func:`slt.dynamics.osculating_curvature`),
the chords on both sides turn by at least ``min_angle`` and are long enough, compared with the noise, for
that angle to be real.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from slt._src import validate
from slt._src.results import Result
from slt.dynamics._geometry import local_linear_fit, osculating_curvature
from slt.plotting import _pyplot

__all__ = ["StageResult", "TurnResult", "detect_stages", "detect_turns", "noise_scale"]

_KINDS = {1: "rising", -1: "falling", 0: "plateau"}
_DEFAULT_MIN_PLATEAU = 2.0  # in units of the smoothing scale h
_OUTLIER = 5.0  # points this many noise s.d. off the line through their neighbours are replaced


# ------------------------------------------------------------------------------------------- helpers
def _positions(steps: Any, n: int, name: str = "steps") -> np.ndarray:
    if steps is None:
        return np.arange(n, dtype=np.float64)
    x = np.asarray(steps, dtype=np.float64).reshape(-1)
    if x.shape[0] != n:
        raise ValueError(f"`{name}` must have one entry per point ({n}); got {x.shape[0]}.")
    if not np.all(np.isfinite(x)) or np.any(np.diff(x) <= 0):
        raise ValueError(f"`{name}` must be finite and strictly increasing.")
    return x


def _weights_sq(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a² + b² of the neighbour-interpolation weights at interior points ``idx``."""
    left, right = x[idx] - x[idx - 1], x[idx + 1] - x[idx]
    return (right**2 + left**2) / (left + right) ** 2


def _replace_outliers(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """Replace, worst first, interior points more than 5 sigma off the line through their neighbours by that
    line's value (at most 5 % of the points; a wild point also pulls its neighbours' residuals, so they are
    judged again after each replacement)."""
    y = y.copy()
    for _ in range(max(1, y.shape[0] // 20)):
        resid = _interpolation_residuals(x, y)
        i = int(np.argmax(np.abs(resid)))
        if abs(resid[i]) <= _OUTLIER * sigma:
            break
        y[i + 1] -= resid[i] * math.sqrt(1.0 + _weights_sq(x, np.array([i + 1]))[0])
    return y


def _interpolation_residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residuals of each interior point from the line through its neighbours, scaled to the noise's s.d."""
    left, right = x[1:-1] - x[:-2], x[2:] - x[1:-1]
    a = right / (left + right)  # weight of y[i-1]
    b = left / (left + right)  # weight of y[i+1]
    a = a.reshape((-1,) + (1,) * (y.ndim - 1))
    b = b.reshape(a.shape)
    r = y[1:-1] - a * y[:-2] - b * y[2:]
    return r / np.sqrt(1.0 + a**2 + b**2)


def noise_scale(values: Any, steps: Any = None) -> float:
    r"""Standard deviation of the noise on a curve, from residuals of neighbour interpolation.

    Each interior point's residual from the line through its two neighbours (exact for linear trends, also
    for non-uniform ``steps``) is scaled to unit variance under i.i.d. noise. A robust scale
    :math:`s` = 1.4826 × MAD sets aside residuals beyond :math:`4s` (outliers, kinks, steps); the estimate is
    the root-mean-square of the rest, which — unlike the MAD alone — keeps the extra spread of heavy-tailed
    noise. ``values`` (N,) or (N, k); for several coordinates, the root-mean-square of their scales.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.shape[0] < 3:
        raise ValueError(f"`values` needs at least 3 points to estimate noise; got {y.shape[0]}.")
    x = _positions(steps, y.shape[0])
    r = _interpolation_residuals(x, y).reshape(y.shape[0] - 2, -1)
    r = r - np.median(r, axis=0)
    mad = 1.4826 * np.median(np.abs(r), axis=0)
    kept = np.abs(r) <= 4.0 * mad
    rms = np.sqrt(np.sum(np.where(kept, r**2, 0.0), axis=0) / np.maximum(kept.sum(axis=0), 1))
    return float(np.sqrt(np.mean(rms**2)))


def _runs(labels: np.ndarray) -> list[list[int]]:
    """[start, end (inclusive), label] of each maximal run of equal labels."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.r_[0, edges]
    ends = np.r_[edges - 1, labels.shape[0] - 1]
    return [[int(s), int(e), int(labels[s])] for s, e in zip(starts, ends)]


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line: (slope, residual sum of squares, sum of squared x deviations)."""
    xs = x - x.mean()
    sxx = float(xs @ xs)
    slope = float(xs @ y) / sxx if sxx > 0 else 0.0
    resid = y - y.mean() - slope * xs
    return slope, float(resid @ resid), sxx


def _hinge(x: np.ndarray, y: np.ndarray) -> tuple[int, float, float, float]:
    """Best continuous two-segment line with its kink at one of the interior points.

    Returns (kink index, residual sum of squares, left slope, right slope).
    """
    best = (0, math.inf, 0.0, 0.0)
    for j in range(1, x.shape[0] - 1):
        d = x - x[j]
        design = np.stack([np.ones_like(x), np.minimum(d, 0.0), np.maximum(d, 0.0)], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        rss = float(resid @ resid)
        if rss < best[1]:
            best = (j, rss, float(coef[1]), float(coef[2]))
    return best


def _run_slope(run, x, level) -> float | None:
    s, e, _ = run
    return None if x[e] <= x[s] else float(level[e] - level[s]) / float(x[e] - x[s])


def _clean(labels: np.ndarray, x, y, level, sigma: float, threshold: float, min_change: float, min_plateau: float):
    """Apply the significance rules (module docstring, step 5) until the labels stop changing."""
    labels = labels.copy()
    min_change_abs = min_change * sigma
    for _ in range(4 * labels.shape[0] + 10):
        runs = _runs(labels)
        # (a) a rise or fall that does not move the level enough is flat
        weak = [r for r in runs if r[2] != 0 and abs(level[r[1]] - level[r[0]]) < min_change_abs]
        if weak:
            for s, e, _ in weak:
                labels[s : e + 1] = 0
            continue
        if len(runs) == 1:
            break
        changed = False
        for i, (s, e, lab) in enumerate(runs):
            if lab != 0 or e - s < 3:
                continue
            slope, rss, sxx = _line(x[s : e + 1], y[s : e + 1])
            se = sigma / math.sqrt(sxx)
            change = level[e] - level[s]
            # (b) a "plateau" along which the level moves significantly is a slow rise or fall
            if abs(change) >= min_change_abs and abs(slope) > threshold * se and slope * change > 0:
                labels[s : e + 1] = 1 if slope > 0 else -1
                changed = True
                break
            # (c) a flat run that cannot be told from its rising/falling neighbour continuing is part of it
            nbrs = [runs[j] for j in (i - 1, i + 1) if 0 <= j < len(runs)]
            cont = []
            for nb in nbrs:
                nb_slope = _run_slope(nb, x, level)
                if nb_slope is not None and nb[2] * (nb_slope - slope) < threshold * se:
                    cont.append(nb[2])
            if cont and len(set(cont)) == 1:
                labels[s : e + 1] = cont[0]
                changed = True
                break
            # (d) between a rise and a fall, a flat run shaped like a peak (a two-segment fit with the right
            # slopes beats a line significantly) is a turning point
            if len(nbrs) == 2 and nbrs[0][2] == -nbrs[1][2] != 0 and e - s >= 4:
                j, rss2, left, right = _hinge(x[s : e + 1], y[s : e + 1])
                k0 = nbrs[0][2]
                if k0 * left > 0 and k0 * right < 0 and (rss - rss2) / sigma**2 > threshold**2:
                    labels[s : s + j + 1] = k0
                    labels[s + j + 1 : e + 1] = -k0
                    changed = True
                    break
        if changed:
            continue
        # (e) the shortest flat run shorter than min_plateau is no plateau
        short = [(x[r[1]] - x[r[0]], i) for i, r in enumerate(runs) if r[2] == 0 and x[r[1]] - x[r[0]] < min_plateau]
        if not short:
            break
        _, i = min(short)
        s, e, _ = runs[i]
        before = runs[i - 1][2] if i > 0 else None
        after = runs[i + 1][2] if i + 1 < len(runs) else None
        if before is None or after is None or before == after:
            labels[s : e + 1] = after if before is None else before
        else:  # between a rise and a fall: a turning point at the extremum of the smoothed curve
            j = s + int(np.argmax(before * level[s : e + 1]))
            labels[s : j + 1] = before
            labels[j + 1 : e + 1] = after
    return labels


def _plateau_edge(x, y, runs_pair, h: float) -> float:
    """Boundary between a plateau and a rise or fall: the kink of a continuous two-segment fit between the two
    runs' middles (within ±8h of where the classification switches), if the fit has a flat side and a
    steeper side of the run's sign; otherwise the switch itself. The switch alone lies about h inside the
    sloped run, since smoothing spreads a corner's slope over the plateau's edge."""
    (s0, e0, k0), (s1, e1, k1) = runs_pair
    switch = 0.5 * float(x[e0] + x[s1])
    a = max((s0 + e0) // 2, int(np.searchsorted(x, switch - 8 * h, side="left")))
    b = min((s1 + e1) // 2, int(np.searchsorted(x, switch + 8 * h, side="right")) - 1)
    if b - a < 4:
        return switch
    j, _, left, right = _hinge(x[a : b + 1], y[a : b + 1])
    sloped, flat = (left, right) if k0 != 0 else (right, left)
    sign = k0 if k0 != 0 else k1
    if sign * sloped > 0 and abs(sloped) > abs(flat):
        return float(x[a + j])
    return switch


def _turning_point(x, y, level, lo: int, hi: int, sign: int, h: float) -> float:
    """Turning point between a run of sign ``sign`` and one of the opposite sign, given the indices of their
    middles: the smoothed curve's extremum, refined by a continuous two-segment fit within ±4h of it (which
    removes the smoother's O(h) shift of an asymmetric corner)."""
    peak = lo + int(np.argmax(sign * level[lo : hi + 1]))
    a = max(lo, int(np.searchsorted(x, x[peak] - 4 * h, side="left")))
    b = min(hi, int(np.searchsorted(x, x[peak] + 4 * h, side="right")) - 1)
    if b - a < 4:
        return float(x[peak])
    j, _, left, right = _hinge(x[a : b + 1], y[a : b + 1])
    if sign * left > 0 and sign * right < 0:
        return float(x[a + j])
    return float(x[peak])


# ------------------------------------------------------------------------------------------- stages
@dataclasses.dataclass
class StageResult(Result):
    """Result of :func:`detect_stages`. Positions are in the units of ``steps``.

    Attributes:
        boundaries: (m,) stage boundaries: turning points and plateau starts/ends, increasing.
        stages: list of ``(start, end, kind)``, contiguous from the first step to the last, kind one of
            ``"rising"``, ``"falling"``, ``"plateau"``.
        smoothed: (N,) the smoothed curve (local linear level).
        slope: (N,) the smoothed slope, per unit of ``steps``.
        slope_z: (N,) slope / its standard error.
        noise_scale: :math:`\\hat\\sigma`, the noise standard deviation estimated from the raw curve.
        curve, steps: the input.
        smoothing, threshold, min_change, min_plateau, noise_floor: the settings used.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import detect_stages
        >>> steps = np.arange(100.0)
        >>> ramp = np.clip((steps - 40) / 20, 0, 1)  # flat, a rise from step 40 to 60, flat
        >>> curve = ramp + 0.01 * np.random.default_rng(0).normal(size=100)
        >>> res = detect_stages(curve, steps)
        >>> res.stages[1][2], res.smoothed.shape, bool(res.noise_scale < 0.02)
        ('rising', (100,), True)
    """

    boundaries: np.ndarray
    stages: list[tuple[float, float, str]]
    smoothed: np.ndarray
    slope: np.ndarray
    slope_z: np.ndarray
    noise_scale: float
    curve: np.ndarray
    steps: np.ndarray
    smoothing: float
    threshold: float
    min_change: float
    min_plateau: float
    noise_floor: float

    @property
    def kinds(self) -> list[str]:
        return [kind for _, _, kind in self.stages]

    def plot(self, ax=None, *, label: str = "curve"):
        """The curve, its smoothing, the stages shaded by kind and the boundaries; returns the figure."""
        plt = _pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(8, 3.8), constrained_layout=True)
        else:
            fig = ax.figure
        colours = {"rising": "tab:green", "falling": "tab:red", "plateau": "0.6"}
        shown = set()
        for start, end, kind in self.stages:
            ax.axvspan(start, end, color=colours[kind], alpha=0.12, lw=0, label=None if kind in shown else kind)
            shown.add(kind)
        ax.plot(self.steps, self.curve, color="0.55", lw=0.8, label=label)
        ax.plot(self.steps, self.smoothed, color="k", lw=1.6, label=f"smoothed (h = {self.smoothing:.3g})")
        for i, b in enumerate(self.boundaries):
            ax.axvline(b, color="tab:blue", ls="--", lw=1, label="boundary" if i == 0 else None)
        ax.set_xlabel("step")
        ax.set_title(f"{len(self.stages)} stage(s); noise σ̂ = {self.noise_scale:.3g}", fontsize=10)
        ax.legend(fontsize=8)
        return fig


def detect_stages(
    curve: Any,
    steps: Any = None,
    *,
    smoothing: float | None = None,
    threshold: float = 3.0,
    min_change: float = 3.0,
    min_plateau: float | None = None,
    noise_floor: float = 0.01,
) -> StageResult:
    """Stage boundaries of a scalar development curve at its critical points (see the module docstring).

    Args:
        curve: (N,) values over training (LLC, loss, ...), N ≥ 5.
        steps: (N,) strictly increasing steps, possibly non-uniform; default ``0..N-1``. For log-spaced
            checkpoints pass ``np.log(steps)`` to smooth on the log scale.
        smoothing: Gaussian scale h of the local linear smoother, in step units. Default: 2 % of the span of
            ``steps``, at least 2 × the median spacing.
        threshold: |slope / SE| above which a point is rising or falling.
        min_change: a rise or fall must move the smoothed level by at least this many noise s.d.
        min_plateau: shortest plateau, in step units; shorter flat runs are turning points or are merged.
            Default: the larger of 5 % of the span and 3 h.
        noise_floor: the noise scale used is at least this fraction of the curve's range.

    Returns:
        :class:`StageResult`.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import detect_stages
        >>> steps = np.arange(100.0)
        >>> ramp = np.clip((steps - 40) / 20, 0, 1)  # flat, a rise from step 40 to 60, flat
        >>> curve = ramp + 0.01 * np.random.default_rng(0).normal(size=100)
        >>> res = detect_stages(curve, steps)
        >>> res.kinds, bool(np.allclose(res.boundaries, [40, 60], atol=3))
        (['plateau', 'rising', 'plateau'], True)
    """
    y = np.asarray(curve, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"`curve` must be one-dimensional; got shape {y.shape}.")
    n = y.shape[0]
    if n < 5:
        raise ValueError(f"`curve` needs at least 5 points; got {n}.")
    if not np.all(np.isfinite(y)):
        raise ValueError("`curve` contains NaN or infinite values.")
    x = _positions(steps, n)
    span = float(x[-1] - x[0])
    h = validate.positive_float(smoothing, "smoothing", allow_none=True)
    if h is None:
        h = max(0.02 * span, 2.0 * float(np.median(np.diff(x))))
    threshold = validate.positive_float(threshold, "threshold")
    min_change = validate.positive_float(min_change, "min_change")
    min_plateau = validate.positive_float(min_plateau, "min_plateau", allow_none=True)
    if min_plateau is None:
        min_plateau = _DEFAULT_MIN_PLATEAU * h
    noise_floor = validate.positive_float(noise_floor, "noise_floor")

    # the last two terms keep a constant curve's rounding errors from counting as slopes
    sigma = max(noise_scale(y, x), noise_floor * float(np.ptp(y)), 1e-12 * float(np.max(np.abs(y))), 1e-300)
    clean = _replace_outliers(x, y, sigma)
    level, slope, _, slope_norm = local_linear_fit(x, clean, h)
    z = slope / (sigma * slope_norm)
    labels = np.where(z > threshold, 1, np.where(z < -threshold, -1, 0))
    labels = _clean(labels, x, clean, level, sigma, threshold, min_change, min_plateau)

    runs = _runs(labels)
    cuts = []  # position of the boundary after each run but the last
    for (s0, e0, k0), (s1, e1, k1) in zip(runs[:-1], runs[1:]):
        if k0 != 0 and k1 == -k0:  # turning point
            cuts.append(_turning_point(x, clean, level, (s0 + e0) // 2, (s1 + e1) // 2, k0, h))
        else:  # a plateau starts or ends
            cuts.append(_plateau_edge(x, clean, runs_pair=((s0, e0, k0), (s1, e1, k1)), h=h))
    edges = [float(x[0]), *cuts, float(x[-1])]
    stages = [(edges[i], edges[i + 1], _KINDS[r[2]]) for i, r in enumerate(runs)]
    return StageResult(
        boundaries=np.asarray(cuts, dtype=np.float64),
        stages=stages,
        smoothed=level,
        slope=slope,
        slope_z=z,
        noise_scale=sigma,
        curve=y,
        steps=x,
        smoothing=h,
        threshold=threshold,
        min_change=min_change,
        min_plateau=min_plateau,
        noise_floor=noise_floor,
    )


# ------------------------------------------------------------------------------------------- turns
@dataclasses.dataclass
class TurnResult(Result):
    """Result of :func:`detect_turns`.

    Attributes:
        indices: (m,) point indices of the turns.
        positions: (m,) their steps.
        curvature: (N,) osculating-circle curvature of the smoothed curve (NaN within ``spacing`` of the ends).
        angle: (N,) turning angle in radians between the chords to the points ``spacing`` before and after.
        significant: (N,) whether each point's chords are long enough, compared with the noise, to trust
            its angle.
        smoothed: (N, k) the smoothed curve.
        noise_scale: per-coordinate noise s.d. of the raw points (RMS over coordinates).
        points, steps: the input.
        smoothing, spacing, min_angle, threshold: the settings used (smoothing and spacing in points).

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import detect_turns
        >>> a = np.linspace(0, 1, 40)
        >>> corner = np.concatenate([np.stack([a, 0 * a], 1), np.stack([1 + 0 * a[1:], a[1:]], 1)])  # right angle at 39
        >>> res = detect_turns(corner + 0.005 * np.random.default_rng(0).normal(size=corner.shape))
        >>> res.curvature.shape, res.smoothed.shape, bool(res.significant[res.indices].all())
        ((79,), (79, 2), True)
    """

    indices: np.ndarray
    positions: np.ndarray
    curvature: np.ndarray
    angle: np.ndarray
    significant: np.ndarray
    smoothed: np.ndarray
    noise_scale: float
    points: np.ndarray
    steps: np.ndarray
    smoothing: float
    spacing: int
    min_angle: float
    threshold: float

    def plot(self, dims: tuple[int, int] = (0, 1)):
        """The curve (two of its coordinates) with the turns marked, and the curvature profile; returns the
        figure."""
        plt = _pyplot()
        fig, (ax_curve, ax_k) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
        i, j = dims if self.points.shape[1] > 1 else (0, 0)
        ax_curve.plot(self.points[:, i], self.points[:, j], color="0.75", lw=0.8)
        sc = ax_curve.scatter(self.points[:, i], self.points[:, j], c=self.steps, cmap="viridis", s=10)
        ax_curve.plot(self.smoothed[:, i], self.smoothed[:, j], color="k", lw=1.2)
        ax_curve.scatter(
            self.smoothed[self.indices, i],
            self.smoothed[self.indices, j],
            s=120,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=2,
            label="turn",
        )
        fig.colorbar(sc, ax=ax_curve, label="step")
        ax_curve.set_xlabel(f"dim {i + 1}")
        ax_curve.set_ylabel(f"dim {j + 1}")
        ax_curve.legend(fontsize=8)
        ax_k.plot(self.steps, self.curvature, color="k", lw=1.2, label="curvature 1/R")
        ax_a = ax_k.twinx()
        ax_a.plot(self.steps, np.degrees(self.angle), color="tab:orange", lw=1, alpha=0.8)
        ax_a.axhline(math.degrees(self.min_angle), color="tab:orange", ls=":", lw=1)
        ax_a.set_ylabel("turning angle (deg)", color="tab:orange")
        for b in self.positions:
            ax_k.axvline(b, color="tab:red", ls="--", lw=1)
        ax_k.set_xlabel("step")
        ax_k.set_ylabel("curvature")
        ax_k.set_title(f"{len(self.indices)} turn(s); chord spacing {self.spacing}, smoothing {self.smoothing:.3g}")
        return fig


def detect_turns(
    points: Any,
    steps: Any = None,
    *,
    smoothing: float | None = None,
    spacing: int | None = None,
    min_angle: float = math.pi / 4,
    threshold: float = 5.0,
) -> TurnResult:
    r"""Sharp turns and cusps of a curve in :math:`\mathbb R^k` (e.g. PC scores over checkpoints).

    The curve is smoothed (Gaussian local linear, scale ``smoothing`` points); at each point the circle
    through the smoothed points ``spacing`` before and after gives the curvature :math:`1/R` and the turning
    angle :math:`\theta` (:func:`slt.dynamics.osculating_curvature`). A point is a candidate when

    * :math:`\theta \ge` ``min_angle`` (default 45°: a right-angle corner is :math:`\pi/2`, a cusp
      :math:`\pi`), and
    * both chords are longer than ``threshold`` × :math:`\sqrt{k(\sigma_a^2 + \sigma_b^2)}`, the typical length
      of a chord between smoothed points a and b that is due to noise alone (:math:`\sigma_a` = noise s.d.
      of a smoothed coordinate at a, from the raw points' :func:`noise_scale` and the smoother's weights,
      larger near the ends), so that the angle is not noise: its error is then about
      :math:`1/\text{threshold}` radian per chord or less.

    Each maximal run of consecutive candidates is one turn, placed at its maximum curvature; turns within
    ``spacing`` points of each other are one.

    Args:
        points: (N, k) points in time order, k ≥ 2, N ≥ 7.
        steps: (N,) steps of the points, for reporting positions; default ``0..N-1``.
        smoothing: smoother scale h in points; default ``max(0.75, N / 100)``.
        spacing: chord spacing s in points; default ``max(3, round(max(4h, N / 20)))``. Smoothing rounds a
            corner over about h points, so chords of s ≥ 4h are needed to see its full angle.
        min_angle: smallest turning angle counted, radians.
        threshold: significance of the chords, in noise units (5: an angle error of about 0.2 rad per chord).

    Returns:
        :class:`TurnResult`.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import detect_turns
        >>> a = np.linspace(0, 1, 40)
        >>> corner = np.concatenate([np.stack([a, 0 * a], 1), np.stack([1 + 0 * a[1:], a[1:]], 1)])  # right angle at 39
        >>> res = detect_turns(corner + 0.005 * np.random.default_rng(0).normal(size=corner.shape))
        >>> bool(len(res.indices) == 1 and abs(res.indices[0] - 39) <= 2)
        True
        >>> bool(abs(np.degrees(res.angle[res.indices[0]]) - 90) < 20)
        True
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"`points` must be shaped (num_points, k) with k >= 2; got shape {p.shape}.")
    n, k = p.shape
    if n < 7:
        raise ValueError(f"`points` needs at least 7 points; got {n}.")
    if not np.all(np.isfinite(p)):
        raise ValueError("`points` contains NaN or infinite values.")
    x = _positions(steps, n)
    h = validate.positive_float(smoothing, "smoothing", allow_none=True)
    h = max(0.75, n / 100) if h is None else h
    if spacing is None:
        spacing = max(3, round(max(4 * h, n / 20)))
    if isinstance(spacing, bool) or not isinstance(spacing, (int, np.integer)) or not 1 <= spacing < n // 2:
        raise ValueError(f"`spacing` must be an integer in [1, {n // 2 - 1}]; got {spacing!r}.")
    min_angle = float(min_angle)
    if not 0.0 <= min_angle <= math.pi:
        raise ValueError(f"`min_angle` must be in [0, pi] radians; got {min_angle!r}.")
    threshold = validate.positive_float(threshold, "threshold")

    index = np.arange(n, dtype=np.float64)
    smoothed, _, level_norm, _ = local_linear_fit(index, p, h)
    sigma = noise_scale(p)
    curvature, angle = osculating_curvature(smoothed, spacing)
    # noise s.d. of each chord (per coordinate): the smoother's weights at both of its ends
    var = (sigma * level_norm) ** 2
    noise_u = np.sqrt(var[spacing:-spacing] + var[: -2 * spacing])
    noise_v = np.sqrt(var[2 * spacing :] + var[spacing:-spacing])
    u = np.linalg.norm(smoothed[spacing:-spacing] - smoothed[: -2 * spacing], axis=1)
    v = np.linalg.norm(smoothed[2 * spacing :] - smoothed[spacing:-spacing], axis=1)
    chord_z = np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        chord_z[spacing:-spacing] = np.minimum(u / (math.sqrt(k) * noise_u), v / (math.sqrt(k) * noise_v))
    significant = chord_z > threshold
    candidate = significant & (angle >= min_angle)
    candidate &= np.isfinite(curvature)
    turns: list[int] = []
    for s, e, lab in _runs(candidate.astype(np.int64)):
        if not lab:
            continue
        i = s + int(np.nanargmax(curvature[s : e + 1]))
        if turns and i - turns[-1] <= spacing:  # one turn seen twice (a cusp's angle dips at its tip)
            if curvature[i] > curvature[turns[-1]]:
                turns[-1] = i
        else:
            turns.append(i)
    indices = np.asarray(turns, dtype=np.int64)
    return TurnResult(
        indices=indices,
        positions=x[indices],
        curvature=curvature,
        angle=angle,
        significant=significant,
        smoothed=smoothed,
        noise_scale=sigma,
        points=p,
        steps=x,
        smoothing=h,
        spacing=int(spacing),
        min_angle=min_angle,
        threshold=threshold,
    )
