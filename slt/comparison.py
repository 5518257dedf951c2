r"""Bayesian model comparison between critical points of one model, through their local free energies.

For a neighbourhood of a point :math:`w^*_k` with learning coefficient :math:`\lambda_k` and multiplicity
:math:`m_k`, Watanabe's asymptotic expansion of the local free energy (negative log marginal likelihood of
that neighbourhood) is

.. math:: F_k(n) = n L_k + \lambda_k \log n - (m_k - 1)\log\log n + O_p(1),

with :math:`L_k` the per-sample loss (negative log-likelihood) at :math:`w^*_k` (Watanabe, *Algebraic
Geometry and Statistical Learning Theory*, 2009, Thm. 6.7 and Sec. 6.3; Lau et al., arXiv 2308.12108, for the
local version). The log posterior odds of two neighbourhoods with equal prior weight are

.. math:: \log\frac{p(k \mid D_n)}{p(j \mid D_n)} = F_j(n) - F_k(n),

so a point with higher loss but a smaller λ is preferred at small n, and the one with lower loss wins once
n is large: a *Bayesian phase transition* at the crossover :math:`n_c`, the larger root of
:math:`n\,\Delta L = -\Delta\lambda \log n + \Delta(m - 1) \log\log n` (Chen, Lau, Mendel, Wei, Murfet,
arXiv 2310.06301, Sec. 5, where the 5-gon → 6-gon transition of the toy model of superposition is
discussed).

How the pieces are obtained here: :math:`L_k = L_n(w^*_k)` on the full data set given (so :math:`F_k(n)`
is read as the free energy of a sample of size n whose loss at :math:`w^*_k` is that of this data set), and
:math:`\hat\lambda_k` from :func:`slt.estimate_llc` (every point with the same loss, shapes and settings
reuses one compilation), or given exactly.

Uncertainty: the standard error :math:`\sigma_k` of each :math:`\hat\lambda_k` is its MCSE
(``LLCResult.llc_mcse``, :func:`slt.diagnostics.mcse`: at least the between-chain standard error; with slowly
mixing chains ArviZ's estimate alone understated the run-to-run spread: on the toy model of superposition, 4-chain
runs with different keys differed by up to 0.4 with ArviZ MCSEs of about 0.1). It is propagated to :math:`F_k(n)` (std
:math:`\sigma_k\log n`) and to :math:`n_c` (delta method, and an interval from re-solving at Δλ ± 1.96σ).
It covers the sampling noise of the estimates only: not their bias (step size, finite n, localization), nor the
dropped :math:`O_p(1)` terms (the prior mass of each neighbourhood, the number of symmetric copies of each point),
which shift :math:`n_c` by about :math:`1/(\Delta L - |\Delta\lambda|/n_c)` per nat.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from slt._src import validate
from slt._src.results import Result
from slt._src.validate import as_key
from slt.llc import LLCResult, estimate_llc
from slt.targets import make_target, per_example_losses

__all__ = ["Crossover", "ModelComparison", "compare_models", "crossover_num_data", "free_energy_asymptotic"]

_Z95 = 1.959963984540054  # two-sided 95% normal quantile
_N_MAX = 1e15  # crossovers beyond this n are reported as absent


def free_energy_asymptotic(num_data, loss: float, llc: float, multiplicity: int = 1) -> np.ndarray:
    r""":math:`n L + \lambda\log n - (m - 1)\log\log n` for an array of n (Watanabe 2009); n > e when m > 1."""
    n = np.asarray(num_data, dtype=np.float64)
    out = n * loss + llc * np.log(n)
    if multiplicity != 1:
        out = out - (multiplicity - 1) * np.log(np.log(n))
    return out


def crossover_num_data(
    delta_loss: float, delta_llc: float, delta_multiplicity: int = 0, *, n_min: float = 3.0
) -> float:
    r"""The n > ``n_min`` where :math:`g(n) = n\,\Delta L + \Delta\lambda\log n - \Delta m \log\log n` turns positive.

    Δ is "point a minus point b", with a the point of higher loss (ΔL > 0): for n below the returned value
    point a has the lower free energy (is preferred), above it point b. Returns the largest sign change of g
    from negative to positive on (n_min, 1e15), found on a logarithmic grid and refined by bisection in
    log n; NaN if g is never negative there (point b is preferred at every n, e.g. when
    :math:`-\Delta\lambda < e\,\Delta L`, or when Δλ ≥ 0). With Δm = 0 this is the larger root of
    :math:`n\,\Delta L = -\Delta\lambda\log n`, that is, with :math:`a = -\Delta\lambda/\Delta L`,
    :math:`n_c = -a\,W_{-1}(-1/a)` (Lambert W, lower branch).
    """
    if not delta_loss > 0:
        raise ValueError(f"`delta_loss` must be > 0 (a is the point of higher loss); got {delta_loss!r}.")

    def g(log_n):
        n = np.exp(log_n)
        return n * delta_loss + delta_llc * log_n - delta_multiplicity * np.log(log_n)

    grid = np.linspace(math.log(n_min), math.log(_N_MAX), 4000)
    values = g(grid)
    rising = np.flatnonzero((values[:-1] < 0) & (values[1:] >= 0))
    if rising.size == 0:
        return float("nan")
    lo, hi = grid[rising[-1]], grid[rising[-1] + 1]
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if g(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return float(math.exp(0.5 * (lo + hi)))


@dataclasses.dataclass(frozen=True)
class Crossover:
    """A Bayesian phase transition between two points: ``before`` is preferred for n < ``num_data``,
    ``after`` (the point with lower loss and higher λ) for n > ``num_data``.

    Attributes:
        before, after: point names.
        num_data: the crossover :math:`n_c`.
        num_data_std: delta-method std of :math:`n_c` from the λ̂ errors (0 when both λ are exact).
        interval: :math:`n_c` re-solved at :math:`\\Delta\\lambda \\pm 1.96\\sigma_{\\Delta\\lambda}` (an end is NaN
            where no crossover exists at that Δλ).
    """

    before: str
    after: str
    num_data: float
    num_data_std: float
    interval: tuple[float, float]

    def __str__(self) -> str:
        if self.num_data_std == 0:
            return f"{self.before} → {self.after} at n ≈ {self.num_data:.4g}"
        lo, hi = (f"{v:.4g}" if math.isfinite(v) else "none" for v in self.interval)
        return f"{self.before} → {self.after} at n ≈ {self.num_data:.4g} ± {self.num_data_std:.2g} (95%: {lo} – {hi})"


@dataclasses.dataclass
class ModelComparison(Result):
    r"""Result of :func:`compare_models`. Arrays are indexed by point, in the order of ``names``.

    Attributes:
        names: the points' names.
        losses: :math:`L_n(w^*_k)` on the full data set.
        llcs: :math:`\hat\lambda_k` (estimated, or given).
        llc_errors: the standard error used for each λ: ``llc_mcse`` of the estimate, the std given in ``llcs``,
            or 0 for a given exact value.
        multiplicities: :math:`m_k` (1 unless given).
        num_data: n of the data set the losses (and LLCs) were computed on.
        num_data_grid: the n at which ``free_energies`` are tabulated.
        free_energies: (K, G) :math:`F_k(n)` on ``num_data_grid``.
        free_energy_stds: (K, G) :math:`\sigma_k \log n`.
        crossovers: one :class:`Crossover` per pair whose preferred point changes with n (pairs where one
            point is preferred at every n have none).
        transitions: the sequence of changes of the *overall* preferred point (argmin of F) as n grows, as
            :class:`Crossover` objects, in increasing n.
        llc_results: the :class:`~slt.llc.LLCResult` of each point (``None`` where λ was given).

    Example:
        >>> import slt
        >>> five = slt.models.tms(num_data=200, point="5-gon")  # λ = 7, higher loss
        >>> six = slt.models.tms(num_data=200, point="6-gon")  # λ = 17/2, lower loss; the same data (same seed)
        >>> comp = slt.compare_models(five.loss_fn, {"5-gon": five.params, "6-gon": six.params}, five.data,
        ...                           llcs={"5-gon": five.true_llc, "6-gon": six.true_llc})  # λ known: no sampling
        >>> comp.names, comp.llcs.tolist(), comp.free_energies.shape
        (['5-gon', '6-gon'], [7.0, 8.5], (2, 256))
        >>> bool(comp.log_odds("5-gon", "6-gon", 50) > 0), bool(comp.log_odds("5-gon", "6-gon", 10_000) < 0)
        (True, True)
        >>> comp.summary().splitlines()[0]
        'Model comparison of 2 points, n = 200 (F(n) = nL + λ log n − (m−1) log log n)'
    """

    names: list[str]
    losses: np.ndarray
    llcs: np.ndarray
    llc_errors: np.ndarray
    multiplicities: np.ndarray
    num_data: int
    num_data_grid: np.ndarray
    free_energies: np.ndarray
    free_energy_stds: np.ndarray
    crossovers: list[Crossover]
    transitions: list[Crossover]
    llc_results: dict[str, LLCResult | None]

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown point {name!r}; the points are {self.names}.")
        return self.names.index(name)

    def free_energy(self, name: str, num_data) -> np.ndarray:
        r""":math:`F(n) = nL + \lambda\log n - (m-1)\log\log n` of point ``name`` at any n (array-like)."""
        k = self._index(name)
        return free_energy_asymptotic(num_data, self.losses[k], self.llcs[k], int(self.multiplicities[k]))

    def log_odds(self, a: str, b: str, num_data) -> np.ndarray:
        r"""Log posterior odds :math:`\log p(a \mid D_n)/p(b \mid D_n) = F_b(n) - F_a(n)` (equal prior weights)."""
        return self.free_energy(b, num_data) - self.free_energy(a, num_data)

    def log_odds_std(self, a: str, b: str, num_data) -> np.ndarray:
        r"""Std of :meth:`log_odds` from the λ̂ errors: :math:`\sqrt{\sigma_a^2 + \sigma_b^2}\,\log n`."""
        sa, sb = self.llc_errors[self._index(a)], self.llc_errors[self._index(b)]
        return math.hypot(sa, sb) * np.log(np.asarray(num_data, dtype=np.float64))

    def preferred(self, num_data: float) -> str:
        """The point with the lowest free energy at n."""
        values = [self.free_energy(name, num_data) for name in self.names]
        return self.names[int(np.argmin(values))]

    def crossover(self, a: str, b: str) -> Crossover | None:
        """The :class:`Crossover` between points a and b (either order); ``None`` if one point is preferred at every
        n (equal losses, or the lower-loss point also has the lower λ)."""
        ia, ib = self._index(a), self._index(b)
        return _pair_crossover(self, ia, ib)

    def summary(self) -> str:
        """A plain-text table (loss, λ, m, free energy at the data's n) and the crossovers."""
        n = self.num_data
        lines = [
            f"Model comparison of {len(self.names)} points, n = {n} (F(n) = nL + λ log n − (m−1) log log n)",
            f"{'point':<16} {'L_n(w*)':>11} {'λ':>16} {'m':>3} {'F(n)':>12}   LLC run",
        ]
        for k, name in enumerate(self.names):
            res = self.llc_results.get(name)
            lam = f"{self.llcs[k]:.4g}" + (f" ± {self.llc_errors[k]:.2g}" if self.llc_errors[k] > 0 else " (given)")
            run = "—" if res is None else f"R-hat {res.rhat:.3f}, ESS {res.ess:.0f}, {len(res.warnings)} warning(s)"
            f_n = float(self.free_energy(name, n))
            lines.append(
                f"{name:<16} {self.losses[k]:>11.6g} {lam:>16} {int(self.multiplicities[k]):>3} {f_n:>12.5g}   {run}"
            )
        lines.append(f"preferred at n = {n}: {self.preferred(n)}")
        if self.crossovers:
            lines.append("pairwise crossovers:")
            lines.extend(f"  {c}" for c in self.crossovers)
        else:
            lines.append("no pairwise crossover: the preferred point is the same at every n")
        if self.transitions:
            lines.append(
                "overall preferred point as n grows: "
                + self.transitions[0].before
                + "".join(f" → {t.after} (n ≈ {t.num_data:.4g})" for t in self.transitions)
            )
        for name, res in self.llc_results.items():
            if res is not None:
                lines.extend(f"warning ({name}): {w}" for w in res.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        cross = ", ".join(f"{c.before}→{c.after} n≈{c.num_data:.3g}" for c in self.crossovers) or "none"
        return f"ModelComparison(points={self.names}, n={self.num_data}, crossovers: {cross})"

    def plot(self, *, reference: str | None = None):
        r"""Two panels, returns the figure. Left: :math:`F_k(n) - n\min_j L_j` (the common linear term removed, so
        the curves' crossings show) with ±1.96σ bands. Right: log posterior odds of each point against
        ``reference`` (default: the point preferred at the largest n of the grid), crossovers marked."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        n = self.num_data_grid
        ref = reference if reference is not None else self.preferred(float(n[-1]))
        ir = self._index(ref)
        fig, (ax_f, ax_o) = plt.subplots(1, 2, figsize=(11, 4.2))
        base = n * np.min(self.losses)
        for k, name in enumerate(self.names):
            f = self.free_energies[k] - base
            band = _Z95 * self.free_energy_stds[k]
            (line,) = ax_f.plot(n, f, label=f"{name} (λ = {self.llcs[k]:.3g})")
            if np.any(band > 0):
                ax_f.fill_between(n, f - band, f + band, color=line.get_color(), alpha=0.2)
            if k != ir:
                odds = self.log_odds(name, ref, n)
                band = _Z95 * self.log_odds_std(name, ref, n)
                ax_o.plot(n, odds, color=line.get_color(), label=f"log p({name}) / p({ref})")
                if np.any(band > 0):
                    ax_o.fill_between(n, odds - band, odds + band, color=line.get_color(), alpha=0.2)
        ax_o.axhline(0.0, color="k", lw=0.8)
        for c in self.crossovers:
            for ax in (ax_f, ax_o):
                ax.axvline(c.num_data, color="gray", ls="--", lw=0.8)
            ax_o.annotate(
                f"{c.before}→{c.after}\nn≈{c.num_data:.3g}",
                (c.num_data, 0),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=8,
            )
        for ax in (ax_f, ax_o):
            ax.set_xscale("log")
            ax.set_xlabel("n")
            ax.legend(fontsize=8)
        ax_f.set_ylabel(r"$F_k(n) - n\,\min_j L_j$")
        ax_f.set_title("local free energy (asymptotic)")
        ax_o.set_ylabel("log posterior odds")
        ax_o.set_title(f"against {ref}")
        fig.tight_layout()
        return fig


# ------------------------------------------------------------------------------------------- internals
def _pair_crossover(comp: ModelComparison, ia: int, ib: int) -> Crossover | None:
    la, lb = comp.losses[ia], comp.losses[ib]
    if la == lb:
        return None
    if la < lb:  # a: the higher-loss point
        ia, ib = ib, ia
    dl = float(comp.losses[ia] - comp.losses[ib])
    dlam = float(comp.llcs[ia] - comp.llcs[ib])
    dm = int(comp.multiplicities[ia] - comp.multiplicities[ib])
    n_c = crossover_num_data(dl, dlam, dm)
    if not math.isfinite(n_c):
        return None
    sigma = math.hypot(comp.llc_errors[ia], comp.llc_errors[ib])
    slope = dl + dlam / n_c - dm / (n_c * math.log(n_c))  # dg/dn at the root (> 0)
    std = sigma * math.log(n_c) / slope
    if sigma > 0:
        bounds = tuple(crossover_num_data(dl, dlam + s * _Z95 * sigma, dm) for s in (1.0, -1.0))
    else:
        bounds = (n_c, n_c)
    return Crossover(comp.names[ia], comp.names[ib], n_c, float(std), bounds)


def _transitions(comp: ModelComparison) -> list[Crossover]:
    """Changes of argmin_k F_k(n) along a fine log grid from n = 3, each located by bisection."""
    grid = np.geomspace(3.0, max(_N_MAX / 1e3, float(comp.num_data_grid[-1])), 6000)
    values = np.stack([comp.free_energy(name, grid) for name in comp.names])
    best = np.argmin(values, axis=0)
    out = []
    for t in np.flatnonzero(best[1:] != best[:-1]):
        a, b = int(best[t]), int(best[t + 1])
        cross = _pair_crossover(comp, a, b)
        if cross is not None:
            out.append(cross)
    return out


def _full_data_loss(loss_fn, params, data) -> float:
    target = make_target(loss_fn, params, data)
    return float(np.mean(per_example_losses(target), dtype=np.float64))


def _named_points(points) -> dict[str, Any]:
    if isinstance(points, Mapping):
        named = {str(k): v for k, v in points.items()}
        if len(named) != len(points):
            raise ValueError("`points`: names must be distinct after conversion to str.")
    elif isinstance(points, Sequence) and not isinstance(points, (str, bytes)):
        named = {f"point {i}": p for i, p in enumerate(points)}
    else:
        raise ValueError(f"`points` must be a dict name -> params or a list of params; got {type(points).__name__}.")
    if len(named) < 2:
        raise ValueError(f"`points` must hold at least two points to compare; got {len(named)}.")
    structures = {name: jax.tree_util.tree_structure(p) for name, p in named.items()}
    shapes = {name: [np.shape(x) for x in jax.tree_util.tree_leaves(p)] for name, p in named.items()}
    first = next(iter(named))
    for name in named:
        if structures[name] != structures[first] or shapes[name] != shapes[first]:
            raise ValueError(
                f"`points`: every point must be parameters of the same model (same pytree structure and shapes); "
                f"{name!r} differs from {first!r}."
            )
    return named


def _per_point(value, names: list[str], argname: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        if isinstance(value, Sequence) and len(value) == len(names):
            return dict(zip(names, value))
        raise ValueError(f"`{argname}` must be a dict keyed by point name (or a list with one entry per point).")
    unknown = sorted(set(map(str, value)) - set(names))
    if unknown:
        raise ValueError(f"`{argname}` names unknown points {unknown}; the points are {names}.")
    return {str(k): v for k, v in value.items()}


def _llc_value(value, name: str) -> tuple[float, float]:
    mean, std = (value, 0.0) if np.ndim(value) == 0 else tuple(value) if len(value) == 2 else (None, None)
    try:
        mean, std = float(mean), float(std)
    except (TypeError, ValueError):
        raise ValueError(f"`llcs[{name!r}]` must be a number or a (mean, std) pair; got {value!r}.") from None
    if not (math.isfinite(mean) and mean >= 0 and math.isfinite(std) and std >= 0):
        raise ValueError(f"`llcs[{name!r}]` must be finite and non-negative (mean, std); got {value!r}.")
    return mean, std


def _grid(num_data_grid, num_data: int, crossing: list[float], need_loglog: bool) -> np.ndarray:
    if num_data_grid is None:
        top = max([10.0 * num_data] + [10.0 * c for c in crossing if math.isfinite(c)])
        return np.geomspace(3.0 if need_loglog else 2.0, top, 256)
    grid = np.asarray(num_data_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)):
        raise ValueError("`num_data_grid` must be a 1-D array of at least two finite sample sizes.")
    low = math.e if need_loglog else 1.0
    if np.any(grid <= low):
        raise ValueError(
            f"`num_data_grid` values must exceed {'e (log log n is used, some m > 1)' if need_loglog else '1'}; "
            f"got min {grid.min():g}."
        )
    return np.sort(grid)


# ------------------------------------------------------------------------------------------ public
def compare_models(
    loss_fn,
    points,
    data,
    *,
    key=None,
    num_data_grid=None,
    multiplicities=None,
    llcs=None,
    **llc_kwargs,
) -> ModelComparison:
    r"""Compare critical points of one model by their asymptotic local free energies and posterior odds.

    For each point :math:`w^*_k`: :math:`L_k = L_n(w^*_k)` on the full ``data``, :math:`\hat\lambda_k` from
    :func:`slt.estimate_llc` (same ``llc_kwargs`` for every point; one compilation shared by all), then

    .. math:: F_k(n) = n L_k + \lambda_k\log n - (m_k - 1)\log\log n,\qquad
              \log\frac{p(k\mid D_n)}{p(j\mid D_n)} = F_j(n) - F_k(n),

    and the crossover :math:`n_c` of each pair, the larger root of :math:`F_a(n) = F_b(n)`, where the preferred
    point changes (Watanabe 2009; Chen et al. arXiv 2310.06301). See the module docstring for what the
    uncertainties cover.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``, the batch mean of a per-example negative
            log-likelihood (the normalization matters here: :math:`nL` enters the free energy directly).
        points: ``{name: params}`` (or a list of params, named ``"point 0"``, ...), all of the same model.
        data: the data set (pytree of arrays with a leading axis n).
        key: a ``jax.random.key``; point k is sampled with ``jax.random.fold_in(key, k)`` (independent chains per
            point). Required unless every λ is given in ``llcs``.
        num_data_grid: the n at which to tabulate ``free_energies`` (default: 256 log-spaced values from 2
            (3 with multiplicities) to 10 × max(n, crossovers)).
        multiplicities: ``{name: m}``; default 1 for every point (then no log log n term).
        llcs: ``{name: λ}`` or ``{name: (λ, std)}`` for points whose λ is known: they are not sampled.
        **llc_kwargs: passed to :func:`slt.estimate_llc` (``step_size`` is required, plus e.g. ``num_chains``,
            ``num_draws``, ``batch_size``, ``nbeta``, ``localization``). ``step_size="auto"`` chooses per point:
            the points are different posteriors (their own curvature and d), so no setting is shared.

    Returns:
        :class:`ModelComparison` (``.summary()``, ``.plot()``, ``.crossovers``, ``.log_odds(a, b, n)``).

    Raises:
        ValueError: bad ``points``, ``multiplicities``, ``llcs``, ``num_data_grid``, a missing ``key`` or
            ``step_size``; estimate_llc's own errors for the sampler settings.

    Example:
        The 5-gon and the 6-gon of the toy model of superposition (Chen et al., arXiv 2310.06301): the
        simpler 5-gon is preferred at small n, the better-fitting 6-gon once n is large.

        >>> import slt
        >>> five = slt.models.tms(num_data=200, point="5-gon")  # λ = 7, higher loss
        >>> six = slt.models.tms(num_data=200, point="6-gon")  # λ = 17/2, lower loss; the same data (same seed)
        >>> comp = slt.compare_models(five.loss_fn, {"5-gon": five.params, "6-gon": six.params}, five.data,
        ...                           llcs={"5-gon": five.true_llc, "6-gon": six.true_llc})  # λ known: no sampling
        >>> comp.preferred(50), comp.preferred(10_000)
        ('5-gon', '6-gon')
        >>> [(c.before, c.after) for c in comp.crossovers], bool(50 < comp.crossovers[0].num_data < 10_000)
        ([('5-gon', '6-gon')], True)
    """
    named = _named_points(points)
    names = list(named)
    mult = _per_point(multiplicities, names, "multiplicities")
    for name, m in mult.items():
        validate.int_at_least(m, f"multiplicities[{name!r}]", 1)
    given = {name: _llc_value(v, name) for name, v in _per_point(llcs, names, "llcs").items()}
    to_sample = [name for name in names if name not in given]
    if to_sample:
        if key is None:
            raise ValueError(
                f"`key` is required to estimate the LLCs of {to_sample} (pass jax.random.key(seed)), or give their "
                "values in `llcs`."
            )
        key = as_key(key)
        if "step_size" not in llc_kwargs:
            raise ValueError("`step_size` is required (it is passed to slt.estimate_llc for every point).")
    for bad in ("loss", "where"):
        if bad in llc_kwargs:
            raise ValueError(f"`{bad}` is not supported here: compare_models takes a plain loss_fn(params, batch).")

    results: dict[str, LLCResult | None] = {}
    losses, lams, errors = [], [], []
    for k, name in enumerate(names):
        if name in given:
            results[name] = None
            losses.append(_full_data_loss(loss_fn, named[name], data))
            lam, err = given[name]
        else:
            res = estimate_llc(loss_fn, named[name], data, key=jax.random.fold_in(key, k), **llc_kwargs)
            results[name] = res
            losses.append(res.init_loss)
            lam = res.llc_mean
            err = res.llc_mcse
            if not math.isfinite(lam):
                raise ValueError(
                    f"the LLC estimate of point {name!r} is not finite ({lam}); see its warnings: {res.warnings}"
                )
        lams.append(lam)
        errors.append(float(err))
    num_data = int(jax.tree_util.tree_leaves(data)[0].shape[0])
    m_arr = np.array([int(mult.get(name, 1)) for name in names])
    comp = ModelComparison(
        names=names,
        losses=np.asarray(losses, np.float64),
        llcs=np.asarray(lams, np.float64),
        llc_errors=np.asarray(errors, np.float64),
        multiplicities=m_arr,
        num_data=num_data,
        num_data_grid=np.array([2.0, 3.0]),
        free_energies=np.zeros((len(names), 2)),
        free_energy_stds=np.zeros((len(names), 2)),
        crossovers=[],
        transitions=[],
        llc_results=results,
    )
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    comp.crossovers = [c for c in (_pair_crossover(comp, i, j) for i, j in pairs) if c is not None]
    grid = _grid(num_data_grid, num_data, [c.num_data for c in comp.crossovers], bool(np.any(m_arr > 1)))
    comp.num_data_grid = grid
    comp.free_energies = np.stack([comp.free_energy(name, grid) for name in names])
    comp.free_energy_stds = np.outer(comp.llc_errors, np.log(grid))
    comp.transitions = _transitions(comp)
    return comp
