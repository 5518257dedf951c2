r"""The learning coefficient λ itself, not its finite-temperature proxy: :func:`learning_coefficient`.

Why the standard estimate falls short. With :math:`t = n\beta` and a population loss K whose local zeta
function has its largest pole at −λ with order m, the partition function is
:math:`Z(t) = \int e^{-tK}\varphi \sim C\,t^{-\lambda}(\log t)^{m-1}` (Watanabe, *Algebraic Geometry and
Statistical Learning Theory*, 2009, Thm. 6.1/7.1), so

.. math::

    \hat\lambda(t) := t\,\mathbb E_t[K] = -\frac{d\log Z}{d\log t}
    = \lambda - \frac{m-1}{\log t + c} + O(t^{-\delta}),

with c a constant of the problem (the next coefficient of Z's expansion) and δ > 0 the gap to the next pole.
At t = n/log n the :math:`(m-1)/(\log t + c)` term is 10–25% of λ for m = 2 (e.g. K = x²y²: 0.39 at
t ≈ 1086 against λ = ½); for m = 1 only power-law corrections remain.

On a fixed data set the empirical loss adds a fluctuation term, :math:`\mathbb E_\beta[nL_n] = nL_n(w_0) +
\lambda/\beta + U_n\sqrt{\lambda/(2\beta)} + O_p(1)` (Watanabe, arXiv 1208.6338, Thm. 4): relative to λ it is
of order :math:`\sqrt{t/n}`, and for t ≳ n the empirical loss's own minimizer (generically of full rank)
takes over, so λ̂(t) drifts towards the *regular* value of the empirical loss. The temperatures used here
therefore stay at or below n/log n.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from slt._src.results import Result
from slt._src.validate import as_key
from slt.calibration import BIAS_TOLERANCE
from slt.free_energy._common import (
    _auto_seconds,
    _check_localization,
    _check_step_sizes,
    _mcse,
    _problem,
    _same_key,
    _sample,
)
from slt.free_energy._multiplicity import MULTIPLICITY_STD_MAX
from slt.posterior import default_nbeta
from slt.targets import make_target

__all__ = ["LambdaFit", "LearningCoefficientResult", "fit_llc_temperatures", "learning_coefficient"]

METHODS = ("extrapolate", "takio_suzuki", "all")
#: default temperatures: ``DEFAULT_NUM_TEMPERATURES`` values geometric over [t*/DEFAULT_RANGE, t*], t* = n/log n
DEFAULT_RANGE = 25.0
DEFAULT_NUM_TEMPERATURES = 8
_OFFSET_MAX = 1e3  # c beyond this: (m-1)/(log t + c) is flat over any usable range


@dataclasses.dataclass
class LambdaFit:
    r"""The fit of :math:`\hat\lambda(t_k)` by :func:`fit_llc_temperatures`.

    Attributes:
        llc: the fitted λ (the limit t → ∞ of the model).
        multiplicity: m (fitted, or the given one).
        offset: c of the model :math:`\lambda - (m-1)/(\log t + c)` (0 for the free-m line, NaN for m = 1).
        fluctuation: u of the term :math:`u\sqrt{t/n}` (0 when not fitted).
        coefficients: (K,) ``llc ≈ sum(coefficients * values)`` (exact for the linear fits, the Gauss–Newton
            linearization at the solution for the fixed-m fit with c free); the per-draw combination with these
            coefficients gives the Monte-Carlo error.
        multiplicity_coefficients: (K,) the same for m (zeros when m is given).
        llc_std, multiplicity_std: standard errors from the given per-temperature errors assuming them
            independent (:func:`learning_coefficient` replaces them with the per-draw MCSE).
        fitted: (K,) the model at the fit; chi2, dof: its weighted residuals.
        multiplicity_fixed: whether m was given.
    """

    llc: float
    multiplicity: float
    offset: float
    fluctuation: float
    coefficients: np.ndarray
    multiplicity_coefficients: np.ndarray
    llc_std: float
    multiplicity_std: float
    fitted: np.ndarray
    chi2: float
    dof: int
    multiplicity_fixed: bool


def _check_multiplicity(multiplicity) -> int | None:
    if multiplicity is None:
        return None
    if isinstance(multiplicity, bool) or not isinstance(multiplicity, (int, np.integer)) or multiplicity < 1:
        raise ValueError(
            f"`multiplicity` must be None (fit m) or an integer >= 1 (the order of the pole, e.g. from "
            f"slt.theory); got {multiplicity!r}."
        )
    return int(multiplicity)


def fit_llc_temperatures(nbetas, values, stds=None, *, multiplicity=None, num_data=None) -> LambdaFit:
    r"""Extrapolate single-temperature estimates :math:`\hat\lambda(t_k)` to t → ∞.

    The model, by weighted least squares (weights 1/std²):

    .. math:: \hat\lambda(t) = \lambda - \frac{m-1}{\log t + c}\;\big[+\,u\sqrt{t/n}\big]

    * ``multiplicity=None``: m free and c = 0, i.e. linear in 1/log t; λ is the intercept at 1/log t = 0 and
      m = 1 − slope. This keeps the leading term only: with the problem's constant c present the intercept is
      biased low by about (m−1)·c/log²t (e.g. −7% on K = x²y² with t over [n/log n/10, n/log n], n = 10⁴,
      against −22% for the single temperature); on a fixed data set the fluctuation term can reverse the slope
      (see :func:`learning_coefficient`).
    * ``multiplicity=m`` (an integer): λ and c fitted (for m = 1 there is no c). For m = 2 this is the exact
      form up to power-law corrections (:math:`Z = t^{-\lambda}(a\log t + b)`); it recovers λ = ½ of x²y² within
      0.5% from exact values over the same range.
    * ``num_data=n``: adds Watanabe's fluctuation term :math:`u\sqrt{t/n}` of a fixed data set (arXiv
      1208.6338, Thm. 4: :math:`\mathbb E_\beta[nL_n] = nL_n(w_0) + \lambda/\beta + U_n\sqrt{\lambda/(2\beta)}
      + O_p(1)`), with u free; it vanishes as t/n → 0, so λ is the value with it removed.

    Args:
        nbetas: (K,) temperatures t_k = nβ_k > 1, K ≥ 3 (≥ 4 with m free and the fluctuation term).
        values: (K,) :math:`\hat\lambda(t_k)`.
        stds: (K,) their standard errors, or None (unweighted; the error scale is then read off the residuals).
        multiplicity: None or an integer ≥ 1.
        num_data: None (no fluctuation term) or n.

    Example:
        >>> import numpy as np, slt
        >>> t = np.geomspace(100, 1000, 5)
        >>> fit = slt.fit_llc_temperatures(t, 1.5 - (2 - 1) / np.log(t))  # λ = 3/2, m = 2
        >>> round(fit.llc, 9), round(fit.multiplicity, 9)
        (1.5, 2.0)
        >>> fit = slt.fit_llc_temperatures(t, 1.5 - 1 / (np.log(t) + 2.0), multiplicity=2)
        >>> round(fit.llc, 6), round(fit.offset, 4)
        (1.5, 2.0)
        >>> fit = slt.fit_llc_temperatures(t, 1.5 - 1 / np.log(t) - 0.8 * np.sqrt(t / 1e4), num_data=10_000)
        >>> round(fit.llc, 6), round(fit.multiplicity, 6), round(fit.fluctuation, 6)
        (1.5, 2.0, -0.8)
    """
    m_given = _check_multiplicity(multiplicity)
    t = np.asarray(nbetas, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.size < 3 or np.unique(t).size < 3:
        raise ValueError(f"`nbetas` must be a 1-D array of at least 3 distinct temperatures; got {nbetas!r}.")
    if not np.all(np.isfinite(t) & (t > 1)):
        raise ValueError(f"`nbetas` must be finite numbers > 1 (log t > 0); got {t}.")
    if y.shape != t.shape or not np.all(np.isfinite(y)):
        raise ValueError(f"`values` must be {t.size} finite numbers, one per temperature; got {values!r}.")
    if num_data is not None and (
        isinstance(num_data, bool) or not isinstance(num_data, (int, np.integer)) or num_data < 2
    ):
        raise ValueError(f"`num_data` must be None or the integer n >= 2; got {num_data!r}.")
    if stds is None:
        w = np.ones_like(t)
    else:
        s = np.asarray(stds, dtype=np.float64)
        if s.shape != t.shape or not np.all(np.isfinite(s) & (s > 0)):
            raise ValueError(f"`stds` must be {t.size} positive finite numbers; got {stds!r}.")
        w = 1.0 / s**2
    log_t = np.log(t)
    k = t.size
    free_m = m_given is None
    fluct = num_data is not None
    q = np.sqrt(t / num_data) if fluct else None
    num_params = 1 + free_m + fluct + (m_given is not None and m_given > 1)
    if k < num_params + 1:
        raise ValueError(
            f"this model has {num_params} parameters: it needs at least {num_params + 1} temperatures; got {k}."
        )

    def linear(c):
        """Columns, the shifted response and the WLS solution for a given c."""
        g = 1.0 / (log_t + c)
        cols = [np.ones_like(t)] + ([-g] if free_m else []) + ([q] if fluct else [])
        a_design = np.stack(cols, axis=1)
        shifted = y if free_m else y + (m_given - 1.0) * g
        normal = a_design.T @ (w[:, None] * a_design)
        theta = np.linalg.solve(normal, a_design.T @ (w * shifted))
        return a_design, theta, float(np.sum(w * (shifted - a_design @ theta) ** 2))

    c = 0.0
    if not free_m and m_given > 1:
        c = _profile_offset(log_t, lambda cc: linear(cc)[2])
    a_design, theta, chi2 = linear(c)
    jac = a_design
    if not free_m and m_given > 1 and c < _OFFSET_MAX:
        jac = np.concatenate([a_design, ((m_given - 1.0) / (log_t + c) ** 2)[:, None]], axis=1)
    coef_matrix = np.linalg.solve(jac.T @ (w[:, None] * jac), jac.T * w[None, :])
    lam = float(theta[0])
    m = 1.0 + float(theta[1]) if free_m else float(m_given)
    u = float(theta[-1]) if fluct else 0.0
    fitted = lam - (m - 1.0) / (log_t + c) + (u * q if fluct else 0.0)
    m_coef = coef_matrix[1] if free_m else np.zeros(k)
    dof = k - jac.shape[1]
    var = np.full(k, chi2 / dof if dof > 0 else float("nan")) if stds is None else 1.0 / w
    return LambdaFit(
        llc=lam,
        multiplicity=m,
        offset=float(c) if (free_m or m_given > 1) else float("nan"),
        fluctuation=u,
        coefficients=np.asarray(coef_matrix[0], dtype=np.float64),
        multiplicity_coefficients=np.asarray(m_coef, dtype=np.float64),
        llc_std=float(np.sqrt(np.sum(coef_matrix[0] ** 2 * var))),
        multiplicity_std=0.0 if not free_m else float(np.sqrt(np.sum(m_coef**2 * var))),
        fitted=fitted,
        chi2=chi2,
        dof=dof,
        multiplicity_fixed=not free_m,
    )


def _profile_offset(log_t, chi2_of) -> float:
    """The c > −min log t + 0.05 minimizing the profiled χ²: a grid in log(log t + c), then a bounded polish.
    Returns ``_OFFSET_MAX`` when the minimum is at the far end (the data are flat in 1/log t)."""
    from scipy.optimize import minimize_scalar

    base = float(log_t.min())
    grid = np.geomspace(0.05, base + _OFFSET_MAX, 400) - base
    values = np.array([chi2_of(c) for c in grid])
    i = int(np.argmin(values))
    if i == grid.size - 1:
        return float(_OFFSET_MAX)
    left, right = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    return float(minimize_scalar(chi2_of, bounds=(left, right), method="bounded", options={"xatol": 1e-10}).x)


@dataclasses.dataclass
class LearningCoefficientResult(Result):
    r"""Result of :func:`learning_coefficient`.

    Attributes:
        llc, llc_std: λ by ``method`` (for ``"all"``: the extrapolation) and its Monte-Carlo standard error.
        method: the estimator that gave ``llc``.
        multiplicity, multiplicity_std: m (fitted by the free-m extrapolation, or the given one with std 0;
            NaN for ``"takio_suzuki"``).
        multiplicity_resolved: whether the fitted m is pinned down (std ≤ 0.5, so neighbouring integers are
            about 2σ apart); always True when m was given.
        multiplicity_fixed: whether m was given.
        offset: c of the fixed-m model (0 for the free-m line).
        fluctuation: u of the fitted :math:`u\sqrt{t/n}` term (``fluctuation=True``; else 0).
        finite_temperature_llc, finite_temperature_llc_std: the standard estimate
            :math:`t^*(\mathbb E_{t^*}[L_n] - L_n(w^*))` at :math:`t^* = n/\log n` (``finite_temperature_nbeta``),
            from the same run.
        extrapolated_llc, extrapolated_llc_std: the extrapolation (NaN for ``"takio_suzuki"``).
        takio_suzuki_llc, takio_suzuki_llc_std: :math:`(\mathrm{WBIC} - nT_n)/\log n` (NaN for
            ``"extrapolate"``); ``wbic`` and ``empirical_loss`` (:math:`T_n`) its ingredients.
        nbetas, llc_per_temperature, llc_per_temperature_std: (K,) the temperatures of the fit and
            :math:`\hat\lambda(t_k)` with their errors; ``fitted``: the model there; ``coefficients``: (K,)
            ``llc ≈ sum(coefficients * llc_per_temperature)``; ``chi2``, ``dof``.
        excess_loss_trace: (K', C, D) per-draw :math:`L_B(w) - L_B(w^*)` (K' = K, plus one when t* is not among
            the fitted temperatures; that one is last).
    """

    llc: float
    llc_std: float
    method: str
    multiplicity: float
    multiplicity_std: float
    multiplicity_resolved: bool
    multiplicity_fixed: bool
    offset: float
    fluctuation: float
    finite_temperature_llc: float
    finite_temperature_llc_std: float
    finite_temperature_nbeta: float
    extrapolated_llc: float
    extrapolated_llc_std: float
    takio_suzuki_llc: float
    takio_suzuki_llc_std: float
    wbic: float
    empirical_loss: float
    nbetas: np.ndarray
    llc_per_temperature: np.ndarray
    llc_per_temperature_std: np.ndarray
    fitted: np.ndarray
    coefficients: np.ndarray
    chi2: float
    dof: int
    init_loss: float
    num_data: int
    localization: float
    step_size: float
    step_sizes: np.ndarray
    batch_size: int
    sampler: str
    excess_loss_trace: np.ndarray
    warnings: list[str]
    wall_time: float
    takio_suzuki_result: Any = dataclasses.field(default=None, repr=False)

    def summary(self) -> str:
        n = self.num_data
        lines = [
            f"λ = {self.llc:.4g} ± {self.llc_std:.2g} (MC std error; method {self.method!r}), n = {n}, "
            f"γ = {self.localization:.3g}",
        ]
        if np.isfinite(self.extrapolated_llc):
            if self.multiplicity_fixed:
                lines.append(
                    f"extrapolation {self.extrapolated_llc:.4g} ± {self.extrapolated_llc_std:.2g} with m = "
                    f"{self.multiplicity:.0f} given (c = {self.offset:.3g}); χ²/dof = {self.chi2:.3g}/{self.dof}"
                )
            else:
                state = "resolved" if self.multiplicity_resolved else "NOT resolved"
                lines.append(
                    f"extrapolation {self.extrapolated_llc:.4g} ± {self.extrapolated_llc_std:.2g}, m = "
                    f"{self.multiplicity:.3g} ± {self.multiplicity_std:.2g} ({state}); χ²/dof = "
                    f"{self.chi2:.3g}/{self.dof}"
                )
        if np.isfinite(self.takio_suzuki_llc):
            lines.append(
                f"Takio–Suzuki (WBIC − nT_n)/log n = {self.takio_suzuki_llc:.4g} ± {self.takio_suzuki_llc_std:.2g} "
                f"(WBIC {self.wbic:.6g}, T_n {self.empirical_loss:.6g})"
            )
        lines.append(
            f"finite temperature λ̂(n/log n = {self.finite_temperature_nbeta:.5g}) = "
            f"{self.finite_temperature_llc:.4g} ± {self.finite_temperature_llc_std:.2g}"
        )
        if self.nbetas.size:
            lines.append("        nβ    1/log nβ    λ̂(nβ)    ± std      fit")
            for k in range(self.nbetas.size):
                lines.append(
                    f"{self.nbetas[k]:>10.5g} {1 / math.log(self.nbetas[k]):>10.4f} "
                    f"{self.llc_per_temperature[k]:>9.4g} {self.llc_per_temperature_std[k]:>8.2g} "
                    f"{self.fitted[k]:>8.4g}"
                )
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"LearningCoefficientResult(llc={self.llc:.4g}, llc_std={self.llc_std:.3g}, method={self.method!r}, "
            f"multiplicity={self.multiplicity:.3g}, finite_temperature_llc={self.finite_temperature_llc:.4g})"
        )

    def plot(self, ax=None):
        """λ̂(t) against 1/log t with the fitted curve extrapolated to 1/log t = 0. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(5.5, 4))
        else:
            fig = ax.figure
        if self.nbetas.size:
            x = 1.0 / np.log(self.nbetas)
            ax.errorbar(
                x,
                self.llc_per_temperature,
                yerr=2 * self.llc_per_temperature_std,
                fmt="o",
                capsize=3,
                label="λ̂(t) = t(E_t[L_n] − L_n(w*)) ± 2 MCSE",
            )
            if np.isfinite(self.extrapolated_llc):
                grid = np.linspace(1e-4, x.max() * 1.05, 200)
                offset = self.offset if np.isfinite(self.offset) else 0.0
                curve = self.extrapolated_llc - (self.multiplicity - 1) / (1 / grid + offset)
                ax.plot(grid, curve, "--", lw=1, label=f"λ − (m−1)/(log t + c), m = {self.multiplicity:.3g}")
                ax.plot(x, self.fitted, "-", lw=1, label="fit at the temperatures")
                ax.errorbar(
                    [0],
                    [self.extrapolated_llc],
                    yerr=[2 * self.extrapolated_llc_std],
                    fmt="s",
                    capsize=3,
                    label=f"extrapolated λ = {self.extrapolated_llc:.3g} ± {self.extrapolated_llc_std:.2g}",
                )
        if np.isfinite(self.takio_suzuki_llc):
            ax.errorbar(
                [0],
                [self.takio_suzuki_llc],
                yerr=[2 * self.takio_suzuki_llc_std],
                fmt="D",
                capsize=3,
                label=f"Takio–Suzuki {self.takio_suzuki_llc:.3g}",
            )
        ax.set_xlabel("1 / log(nβ)")
        ax.set_ylabel("λ̂")
        ax.set_xlim(left=-0.01)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig


def _check_temperatures(nbetas, n: int, temperature_range: float) -> np.ndarray:
    top = default_nbeta(n)
    if nbetas is None:
        nbetas = DEFAULT_NUM_TEMPERATURES
    if isinstance(nbetas, (int, np.integer)) and not isinstance(nbetas, bool):
        if nbetas < 3:
            raise ValueError(f"`nbetas` as a count must be >= 3 (λ, m and a residual); got {nbetas}.")
        if not (isinstance(temperature_range, (int, float)) and temperature_range > 1):
            raise ValueError(f"`temperature_range` must be a number > 1; got {temperature_range!r}.")
        if top / temperature_range <= math.e:
            raise ValueError(
                f"`temperature_range` {temperature_range} puts the lowest temperature at n/log n / range = "
                f"{top / temperature_range:.3g} ≤ e (log t must be ≥ 1); lower it."
            )
        return np.geomspace(top / temperature_range, top, int(nbetas))
    try:
        arr = np.asarray(nbetas, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`nbetas` must be None, a count >= 3, or an array of temperatures; got {nbetas!r}.") from None
    if arr.ndim != 1 or np.unique(arr).size < 3:
        raise ValueError(f"`nbetas` must be a 1-D array of at least 3 distinct temperatures; got {nbetas!r}.")
    if not np.all(np.isfinite(arr) & (arr > math.e)):
        raise ValueError(f"`nbetas` must be finite temperatures > e (so that log t > 1); got {arr}.")
    return np.sort(arr)


def learning_coefficient(
    model_or_loss,
    *args,
    key,
    step_size="auto",
    localization: float = 1.0,
    method: str = "extrapolate",
    nbetas=None,
    temperature_range: float = DEFAULT_RANGE,
    multiplicity: int | None = None,
    fluctuation: bool = False,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_burnin: int | None = None,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    thin: int | None = None,
    progress: bool = False,
    chunk_size: int = 1024,
    precision: float = 0.02,
    bias_tolerance: float = BIAS_TOLERANCE,
    time_budget: float = 120.0,
) -> LearningCoefficientResult:
    r"""The learning coefficient λ (and the multiplicity m) at w*, beyond the finite-temperature estimate.

    The standard estimate :math:`\hat\lambda(t) = t(\mathbb E_t[L_n] - L_n(w^*))` at :math:`t = n\beta = n/\log n`
    (:func:`slt.estimate_llc`) converges to :math:`-d\log Z/d\log t`, which differs from λ by
    :math:`(m-1)/(\log t + c)` (module docstring): 10–25% when m = 2. Two estimators of λ itself:

    * ``method="extrapolate"`` (default): λ̂(t_k) at K temperatures in one compiled run (every temperature ×
      chain, common random numbers: the same minibatches and noise at every temperature, as
      :func:`slt.llc_multitemperature`), then extrapolated to t → ∞ by :func:`fit_llc_temperatures`. With
      ``multiplicity=m`` given (an integer, e.g. from :func:`slt.theory.dln`) the model is
      :math:`\lambda - (m-1)/(\log t+c)` with c fitted, exact for m ≤ 2 up to power-law corrections: **the
      recommended use** (DLNs at n = 10⁴: with SGLD within 5% of Aoyagi's λ on 5 of 6 networks, worst −9%;
      on exact NUTS λ̂(t) −4.6%, −10.9%, −4.2% on three of them, where λ̂(n/log n) is −2.7%, −17.1%, −5.5%:
      it helps most when m > 1 and does not reach λ on a fixed data set). With m free
      the model is the line :math:`\lambda - (m-1)/\log t` (λ the intercept at 1/log t = 0, m = 1 + its
      negative slope): on a potential (no data) it removes about two thirds of the finite-temperature gap,
      but on a fixed data set the fluctuation term makes λ̂(t) fall at the top of the range, the line reads
      m < 1 and its intercept is *below* the finite-temperature value (a warning says so), and on a *regular*
      model the localizing prior's γ/(t·h) term at the low end does the opposite (linear regression, d = 4,
      n = 1000, γ = 1, defaults: m = 1.82 ± 0.03, "resolved", and λ = 2.20 for 2): read a free m as a
      diagnostic, not a measurement. It converges to the
      λ of the *population* loss as long as the fluctuation term stays small, i.e. for t ≪ n (see below).
      ``fluctuation=True`` adds that term, :math:`u\sqrt{t/n}`, to the fit; it over-corrects on the DLNs
      (+2…+31%), so it is off by default.
    * ``method="takio_suzuki"``: :math:`\hat\lambda_T = (\mathrm{WBIC} - nT_n)/\log n` (Takio & Suzuki, arXiv
      2502.09998), with WBIC :math:`= \mathbb E_{t^*}[nL_n]` at t* = n/log n and Watanabe's empirical loss
      :math:`T_n = -\frac1n\sum_i \log\mathbb E^{\beta=1}_w[p(X_i\mid w)]`, the Bayes training loss of the
      posterior predictive at β = 1, from a second run at nβ = n that records every example's loss at the draws
      (:func:`slt.observables.per_sample_loss` on the training data, every ``thin``-th step). **The loss must
      be the per-example negative log-likelihood** (up to an additive constant, which cancels): a scaled loss
      (MSE without 1/(2σ²)) changes the temperature of β = 1 and the estimate. Asymptotically
      :math:`\mathrm{WBIC} - nT_n = \lambda\log n + O_p(\sqrt{\log n})` and it converges to λ as n → ∞; at
      finite n it inherits WBIC's (m − 1) log log n shortfall in part and the β = 1 posterior's fluctuation.
      Its prior here is the localizing Gaussian N(w*, γ⁻¹I), as for WBIC.
    * ``method="all"``: both; ``llc`` is the extrapolation.

    ``finite_temperature_llc`` (the standard estimate at n/log n, from the same run) is always reported
    beside λ.

    **Temperature range.** By default ``nbetas`` = 8 temperatures geometric over [t*/25, t*], t* = n/log n.
    Not higher: on a fixed data set the empirical loss adds :math:`U_n\sqrt{\lambda t/(2n)}` to λ̂(t)
    (Watanabe, arXiv 1208.6338, Thm. 4) and for t ≳ n the posterior resolves the empirical minimizer, which
    is generically of full rank, so λ̂(t) then tends to the regular value of the empirical loss, not to λ
    (on the DLN 5-3-5 at its rank-0 minimizer, n = 10⁴, λ̂(n) is *negative*: the chains find the full-rank
    dip below L_n(w*)). Measured (``benchmarks/lambda_recovery.py``): on DLNs at n = 10⁴ λ̂(t) *falls* over
    the top of the range (e.g. 6.1 → 5.2 from t*/6 to t*), the opposite of the pole's (m−1)/log t term, so
    the free-m line reads m < 1 and its intercept is not λ (the exact NUTS λ̂(t) shows the same fall, so it is
    not a sampler artefact); with m given, the fit over [t*/25, t*] was slightly better than over
    [t*/10, t*] (SGLD, 6 DLNs: median |error| 1.6% against 2.6%). Not much lower than t*/25: the
    localizing prior (γ/(t h) terms) and the next poles bend λ̂(t) there, and larger steps (below) mix less
    safely. 1/log t spans only [0.14, 0.27] at n = 10⁴: m is *rarely resolved* from one data set, which is
    why giving m helps.

    Step size: ``step_size`` (or ``"auto"``'s choice) is the step at the highest temperature t_max; temperature
    t_k uses ``step_size`` × t_max/t_k, so ε·t, and with it the relative SGLD bias (for a quadratic loss the
    factor :math:`1/(1-\varepsilon t h/4)`) and the number of steps per posterior width, are the same at every
    temperature. (:func:`slt.llc_multitemperature` keeps one ε instead, because its slope is a *difference*
    of temperatures in which a common bias cancels; here each λ̂(t_k) is used on its own.) The Takio–Suzuki
    run at nβ = n uses the grid's step at t* times t*/n (the same ε·t; with ``"auto"``, the step it chose),
    with the same batch size, burn-in and number of steps.

    Args:
        model_or_loss, *args, loss, where, key, num_chains, num_draws, num_burnin, batch_size, sampler,
            sampler_params, progress, chunk_size, precision, bias_tolerance, time_budget: as :func:`slt.estimate_llc`.
        step_size: SGLD step at the highest temperature (scaled as 1/t below it) or ``"auto"``.
        localization: γ ≥ 0 (default 1).
        method: ``"extrapolate"``, ``"takio_suzuki"`` or ``"all"``.
        nbetas: None (default temperatures), a count K ≥ 3 over the default range, or an array of
            temperatures (each > e); t* = n/log n is added to the run (not to the fit) when it is not among them.
        temperature_range: t*/t_lo of the default grid (default 25).
        multiplicity: None (fit m) or the integer m.
        fluctuation: also fit Watanabe's fixed-data-set term :math:`u\sqrt{t/n}` (see
            :func:`fit_llc_temperatures`); needs ≥ 4 temperatures with m free.
        thin: for ``"takio_suzuki"``/``"all"``, record the per-example losses every ``thin``-th step (default:
            as few as keep ≤ 2·10⁷ numbers).

    Returns:
        :class:`LearningCoefficientResult`.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=500, seed=0)  # regular: λ = d/2 = 1, m = 1
        >>> res = slt.learning_coefficient(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=2e-3,
        ...                                num_chains=2, num_draws=2000, num_burnin=200, multiplicity=1)
        >>> res.nbetas.shape, res.multiplicity, res.multiplicity_resolved
        ((8,), 1.0, True)
        >>> bool(abs(res.llc - 1.0) < 5 * res.llc_std + 0.05)
        True
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    m_given = _check_multiplicity(multiplicity)
    if not isinstance(fluctuation, (bool, np.bool_)):
        raise ValueError(f"`fluctuation` must be True or False; got {fluctuation!r}.")
    if thin is not None and (isinstance(thin, bool) or not isinstance(thin, (int, np.integer)) or thin < 1):
        raise ValueError(f"`thin` must be None or a positive integer; got {thin!r}.")
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    gamma = _check_localization(localization, strict=False)
    n = target.num_data
    top = default_nbeta(n)
    extrapolate = method in ("extrapolate", "all")
    fit_nbetas = _check_temperatures(nbetas, n, temperature_range) if extrapolate else np.zeros(0)
    if not isinstance(step_size, str):
        _check_step_sizes(step_size, 1)
    has_top = bool(np.any(np.isclose(fit_nbetas, top, rtol=1e-6)))
    run_nbetas = fit_nbetas if has_top else np.append(fit_nbetas, top)
    top_index = int(np.argmin(np.abs(run_nbetas - top)))
    key, ts_key = jax.random.split(key)
    problem, key = _problem(
        target,
        step_size=step_size,
        localization=gamma,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        batch_size=batch_size,
        sampler=sampler,
        sampler_params=sampler_params,
        chunk_size=chunk_size,
        auto_nbeta=float(run_nbetas.max()),
        key=key,
        precision=precision,
        bias_tolerance=bias_tolerance,
        time_budget=time_budget,
        progress=progress,
    )
    s = problem.settings
    num = run_nbetas.size
    # ε_k·t_k constant: the same relative SGLD bias and the same mixing per step (in units of the posterior's
    # width) at every temperature, which the extrapolation of λ̂(t_k) (not a difference of them) needs
    steps = s.step_size * run_nbetas.max() / run_nbetas
    run = _sample(
        problem, run_nbetas, steps, _same_key(key, num), progress=progress, description="learning coefficient"
    )
    messages = list(run.messages)
    mean_excess, se_excess = run.per_temperature()
    ft, ft_se = float(top * mean_excess[top_index]), float(top * se_excess[top_index])
    nan = float("nan")
    ext = dict(
        llc=nan,
        llc_std=nan,
        m=nan,
        m_std=nan,
        resolved=False,
        offset=nan,
        u=nan,
        fitted=np.zeros(0),
        coef=np.zeros(0),
        chi2=nan,
        dof=0,
    )
    k = fit_nbetas.size
    values, stds = fit_nbetas * mean_excess[:k], fit_nbetas * se_excess[:k]
    if extrapolate:
        ok = bool(np.all(np.isfinite(values)) and np.all(np.isfinite(stds) & (stds > 0)))
        if not ok:
            messages.append("per-temperature estimates or their errors are not finite: no extrapolation.")
        else:
            fit = fit_llc_temperatures(
                fit_nbetas, values, stds, multiplicity=m_given, num_data=n if fluctuation else None
            )
            combo = np.zeros(num)
            combo[:k] = fit.coefficients * fit_nbetas
            _, lam_se = run.mean_and_se(combo)
            m_se = 0.0
            if m_given is None:
                combo_m = np.zeros(num)
                combo_m[:k] = fit.multiplicity_coefficients * fit_nbetas
                _, m_se = run.mean_and_se(combo_m)
            resolved = m_given is not None or (np.isfinite(m_se) and m_se <= MULTIPLICITY_STD_MAX)
            if m_given is None:
                messages.append(
                    "m was fitted freely: the localizing prior's γ/(t·h) term at the low temperatures and the "
                    "fixed-data term at the high ones bend λ̂(t) as (m−1)/log t does, so the free fit misreads m "
                    "even when its error is small (linear regression, d = 4, n = 1000, γ = 1: m = 1.82 ± 0.03, "
                    "λ +10%); pass multiplicity=m where it is known."
                )
            if m_given is None and np.isfinite(m_se) and fit.multiplicity < 1 - 2 * m_se:
                messages.append(
                    f"the fitted m = {fit.multiplicity:.3g} ± {m_se:.2g} is below 1: λ̂(t) falls as t grows, which the "
                    "pole's (m−1)/log t term cannot do; on a fixed data set the empirical loss's own geometry (the "
                    "fluctuation term) dominates the top of the range, and this extrapolation is not λ. Pass "
                    "multiplicity=m (slt.theory), or use the finite-temperature estimate."
                )
            elif m_given is None and not resolved:
                messages.append(
                    f"m = {fit.multiplicity:.3g} ± {m_se:.2g} is not resolved (std > {MULTIPLICITY_STD_MAX}); "
                    "if m is known (slt.theory), pass multiplicity=m."
                )
            if fit.dof > 0 and fit.chi2 / fit.dof > 4:
                messages.append(
                    f"χ²/dof = {fit.chi2 / fit.dof:.3g}: λ̂(t) does not follow the model over this range (localizing "
                    "prior or sampler bias at the ends, or the errors are underestimated); narrow it."
                )
            ext = dict(
                llc=fit.llc,
                llc_std=lam_se,
                m=fit.multiplicity,
                m_std=m_se,
                resolved=bool(resolved),
                offset=fit.offset,
                u=fit.fluctuation,
                fitted=fit.fitted,
                coef=fit.coefficients,
                chi2=fit.chi2,
                dof=fit.dof,
            )
    ts = dict(llc=nan, std=nan, wbic=nan, tn=nan, result=None)
    if method in ("takio_suzuki", "all"):
        ts = _takio_suzuki(
            (model_or_loss, args, loss, where),
            target,
            problem,
            ts_key,
            mean_excess[top_index],
            se_excess[top_index],
            t_max=float(run_nbetas.max()),
            thin=thin,
            num_chains=num_chains,
            num_draws=num_draws,
            num_burnin=num_burnin,
            batch_size=batch_size,
            localization=gamma,
            sampler=sampler,
            sampler_params=sampler_params,
            chunk_size=chunk_size,
            precision=precision,
            bias_tolerance=bias_tolerance,
            time_budget=time_budget,
            progress=progress,
        )
        messages.extend(ts["messages"])
    if method == "takio_suzuki":
        llc, llc_std = ts["llc"], ts["std"]
    else:
        llc, llc_std = ext["llc"], ext["llc_std"]
    return LearningCoefficientResult(
        llc=float(llc),
        llc_std=float(llc_std),
        method=method,
        multiplicity=float(m_given) if m_given is not None else float(ext["m"]),
        multiplicity_std=0.0 if m_given is not None else float(ext["m_std"]),
        multiplicity_resolved=bool(m_given is not None or ext["resolved"]),
        multiplicity_fixed=m_given is not None,
        offset=float(ext["offset"]),
        fluctuation=float(ext["u"]),
        finite_temperature_llc=ft,
        finite_temperature_llc_std=ft_se,
        finite_temperature_nbeta=top,
        extrapolated_llc=float(ext["llc"]),
        extrapolated_llc_std=float(ext["llc_std"]),
        takio_suzuki_llc=float(ts["llc"]),
        takio_suzuki_llc_std=float(ts["std"]),
        wbic=float(ts["wbic"]),
        empirical_loss=float(ts["tn"]),
        nbetas=fit_nbetas,
        llc_per_temperature=values,
        llc_per_temperature_std=stds,
        fitted=np.asarray(ext["fitted"]),
        coefficients=np.asarray(ext["coef"]),
        chi2=float(ext["chi2"]),
        dof=int(ext["dof"]),
        init_loss=problem.init_loss,
        num_data=n,
        localization=gamma,
        step_size=s.step_size,
        step_sizes=steps[:k] if k else steps,
        batch_size=s.batch_size,
        sampler=s.sampler_name,
        excess_loss_trace=run.excess,
        warnings=messages,
        wall_time=run.wall_time + _auto_seconds(problem) + (ts["result"].wall_time if ts["result"] else 0.0),
        takio_suzuki_result=ts["result"],
    )


def _takio_suzuki(
    user_form,
    target,
    problem,
    key,
    top_excess,
    top_excess_se,
    *,
    t_max,
    thin,
    num_chains,
    num_draws,
    num_burnin,
    **kwargs,
) -> dict:
    r"""(WBIC − nT_n)/log n with WBIC from the t* run and T_n from a run at nβ = n recording per-example losses."""
    from slt.llc import estimate_llc
    from slt.observables import per_sample_loss

    n = target.num_data
    s = problem.settings
    draws = s.num_draws if num_draws is None else num_draws
    burnin = s.num_burnin if num_burnin is None else num_burnin
    if thin is None:
        planned = draws if draws is not None else s.num_draws
        thin = max(1, math.ceil(planned * num_chains * n / 2e7))
    # the same ε·t as the grid's top temperature (a numeric step_size is that step; "auto" chose s.step_size there)
    ts_step = s.step_size * t_max / n
    model_or_loss, args, loss, where = user_form
    kwargs["batch_size"] = s.batch_size
    res = estimate_llc(
        model_or_loss,
        *args,
        loss=loss,
        where=where,
        key=key,
        step_size=ts_step,
        nbeta=float(n),
        num_chains=num_chains,
        num_draws=None if draws is None else max(1, draws // thin),
        num_burnin=burnin,
        observables={"example_loss": per_sample_loss(target.data)},
        thin=thin,
        **kwargs,
    )
    ell = np.asarray(res.observables["example_loss"], dtype=np.float64)  # (C, D, n)
    keep = ~np.asarray(res.diverged)
    ell = ell[keep]
    messages = [f"Takio–Suzuki run at nβ = n: {w}" for w in res.warnings]
    if ell.shape[0] == 0:
        nan = float("nan")
        return dict(llc=nan, std=nan, wbic=nan, tn=nan, result=res, messages=messages + ["every chain diverged."])
    neg = -ell.reshape(-1, n)
    log_pred = np.logaddexp.reduce(neg, axis=0) - math.log(neg.shape[0])  # log E_w[p(X_i|w)] per example
    tn = float(-np.mean(log_pred))
    # delta method: per draw z = -(1/n) Σ_i p_i(w)/P_i, whose mean's MCSE is T_n's
    z = -np.mean(np.exp(-ell - log_pred[None, None, :]), axis=2)
    tn_se = _mcse(z)
    wbic = n * (problem.init_loss + float(top_excess))
    wbic_se = n * float(top_excess_se)
    log_n = math.log(n)
    return dict(
        llc=(wbic - n * tn) / log_n,
        std=math.sqrt(wbic_se**2 + (n * tn_se) ** 2) / log_n,
        wbic=wbic,
        tn=tn,
        result=res,
        messages=messages,
    )
