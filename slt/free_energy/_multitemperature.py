r"""The learning coefficient as the slope of :math:`\mathbb E_\beta[nL_n]` against 1/β.

Wei, Murfet, Gong, Li, Gell-Redman, Quella, arXiv 2010.11560; Watanabe, JMLR 14, 2013:
:math:`\mathbb E_\beta[nL_n] \approx nL_n(w^*) + \lambda/\beta` plus terms that vary slowly with β, so λ
is the slope of :math:`\mathbb E_\beta[nL_n]` against 1/β. With a single step size for all temperatures
the leading discretization bias of SGLD is the *same* at every temperature for a quadratic loss
(:math:`n\varepsilon\sum_i h_i / 8`) and drops out of the slope.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from slt._src import validate
from slt._src.results import Result
from slt._src.validate import as_key
from slt.calibration import BIAS_TOLERANCE
from slt.free_energy._common import (
    _auto_seconds,
    _check_localization,
    _check_num_temperatures,
    _check_step_sizes,
    _problem,
    _same_key,
    _sample,
)
from slt.posterior import default_nbeta
from slt.targets import make_target

__all__ = ["MultiTemperatureResult", "llc_multitemperature"]


@dataclasses.dataclass
class MultiTemperatureResult(Result):
    r"""Result of :func:`llc_multitemperature`.

    Attributes:
        llc: the weighted-least-squares slope of :math:`\mathbb E_\beta[nL_n]` against 1/β.
        llc_std: its Monte-Carlo standard error.
        intercept: the fitted :math:`\mathbb E_\beta[nL_n]` at 1/β = 0 (compare ``num_data * init_loss``).
        intercept_std: its standard error.
        nbetas: (K,) the temperatures :math:`n\beta_k`; ``inverse_betas`` = n / nbetas, the regressor.
        mean_nloss, mean_nloss_std: (K,) :math:`\mathbb E_{\beta_k}[nL_n]` and standard errors.
        llc_per_temperature, llc_per_temperature_std: (K,) the single-temperature estimates
            :math:`n\beta_k(\mathbb E[L_n] - L_n(w^*))` and their standard errors.
        fit_weights: (K,) the WLS weights (1 / variance of each mean).
        slope_coefficients: (K,) ``llc = sum(slope_coefficients * mean_nloss)``.
        chi2, dof: weighted residual sum of squares of the straight line and its degrees of freedom
            (chi2/dof ≫ 1: :math:`\mathbb E_\beta[nL_n]` is not linear in 1/β over this range).
        step_sizes: (K,) SGLD steps.
        excess_loss_trace: (K, C, D); diverged: (K, C).

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> res = slt.llc_multitemperature(p.loss_fn, p.params, p.data, key=jax.random.key(0), localization=1.0,
        ...                                step_size=5e-3, num_temperatures=3, num_chains=2, num_draws=4000,
        ...                                num_burnin=100)
        >>> res.nbetas.shape, res.excess_loss_trace.shape, res.dof
        ((3,), (3, 2, 4000), 1)
        >>> bool(np.isclose(res.llc, np.sum(res.slope_coefficients * res.mean_nloss)))
        True
    """

    llc: float
    llc_std: float
    intercept: float
    intercept_std: float
    nbetas: np.ndarray
    inverse_betas: np.ndarray
    mean_nloss: np.ndarray
    mean_nloss_std: np.ndarray
    llc_per_temperature: np.ndarray
    llc_per_temperature_std: np.ndarray
    fit_weights: np.ndarray
    slope_coefficients: np.ndarray
    chi2: float
    dof: int
    init_loss: float
    num_data: int
    localization: float
    step_sizes: np.ndarray
    batch_size: int
    sampler: str
    rhat: np.ndarray
    excess_loss_trace: np.ndarray
    diverged: np.ndarray
    warnings: list[str]
    wall_time: float
    calibration: Any = dataclasses.field(default=None, repr=False)

    def summary(self) -> str:
        lines = [
            f"multi-temperature LLC {self.llc:.4g} ± {self.llc_std:.2g} (MC std error), slope of E_β[nL_n] vs 1/β",
            f"intercept {self.intercept:.6g} ± {self.intercept_std:.2g} "
            f"(n·L_n(w*) = {self.num_data * self.init_loss:.6g}); χ²/dof = {self.chi2:.3g}/{self.dof}; "
            f"n = {self.num_data}, γ = {self.localization:.3g}",
            "        nβ        1/β     E[nL_n]    ± std   λ̂(β) single   ± std",
        ]
        for k in range(self.nbetas.size):
            lines.append(
                f"{self.nbetas[k]:>10.5g} {self.inverse_betas[k]:>10.4g} {self.mean_nloss[k]:>11.6g} "
                f"{self.mean_nloss_std[k]:>8.2g} {self.llc_per_temperature[k]:>12.4g} "
                f"{self.llc_per_temperature_std[k]:>8.2g}"
            )
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MultiTemperatureResult(llc={self.llc:.4g}, llc_std={self.llc_std:.3g}, "
            f"temperatures={self.nbetas.size}, chi2/dof={self.chi2:.3g}/{self.dof})"
        )

    def plot(self):
        """:math:`\\mathbb E_\\beta[nL_n]` against 1/β with the fitted line. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.errorbar(self.inverse_betas, self.mean_nloss, yerr=2 * self.mean_nloss_std, fmt="o", capsize=3)
        x = np.linspace(0, self.inverse_betas.max() * 1.05, 50)
        ax.plot(x, self.intercept + self.llc * x, "-", lw=1, label=f"slope λ̂ = {self.llc:.3g} ± {self.llc_std:.2g}")
        ax.set_xlabel("1/β")
        ax.set_ylabel("E_β[n L_n]")
        ax.set_xlim(self.inverse_betas.min() * 0.8, self.inverse_betas.max() * 1.05)
        lo = min(self.mean_nloss.min(), self.intercept + self.llc * self.inverse_betas.min() * 0.8)
        ax.set_ylim(lo - 0.05 * abs(lo) - 1, None)
        ax.legend()
        fig.tight_layout()
        return fig


def _wls_coefficients(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients a, b with slope = a·y and intercept = b·y of the weighted least-squares line y ≈ b0 + a0 x.

    With two points the slope is (y1 − y2)/(x1 − x2) whatever the weights."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    xbar = np.sum(w * x) / np.sum(w)
    slope = w * (x - xbar) / np.sum(w * (x - xbar) ** 2)
    return slope, w / np.sum(w) - xbar * slope


def llc_multitemperature(
    model_or_loss,
    *args,
    key,
    localization,
    step_size,
    nbetas=None,
    num_temperatures: int = 5,
    spread: float = 2.0,
    common_random_numbers: bool = True,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_burnin: int | None = None,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
    precision: float = 0.02,
    bias_tolerance: float = BIAS_TOLERANCE,
    time_budget: float = 120.0,
) -> MultiTemperatureResult:
    r"""The learning coefficient as the slope of :math:`\mathbb E_\beta[nL_n]` against 1/β.

    Watanabe's expansion :math:`\mathbb E_\beta[nL_n] = nL_n(w_0) + \lambda/\beta + O_p(\sqrt{1/\beta})`
    (JMLR 14, 2013, Thm. 4, for β = β₀/log n) makes λ the slope in 1/β; Wei et al. (arXiv 2010.11560) fit it
    by regression over several β. The intercept absorbs the terms that do not depend on β, which a
    single-temperature estimate :math:`n\beta(\mathbb E_\beta[L_n] - L_n(w^*))` (:func:`slt.estimate_llc`)
    keeps; with two temperatures the fit is the two-temperature estimate
    :math:`(\mathbb E_{\beta_1}[nL_n] - \mathbb E_{\beta_2}[nL_n]) / (1/\beta_1 - 1/\beta_2)`.

    The fit is weighted least squares (weights 1/variance of each mean). Its uncertainty is the MCSE of the
    per-draw combination ``sum_k slope_coefficients[k] * n(L_B(w) − L_B(w*))_k``, which is exact for a
    linear estimator and accounts for the correlation between temperatures. By default all temperatures
    share one key (common random numbers: the same minibatches and noise), which makes the chains at
    neighbouring temperatures move together and their *differences*, hence the slope, far less noisy.

    Step size: one step for every temperature (``step_size`` as a scalar). For a quadratic loss the
    leading SGLD bias of :math:`\mathbb E_\beta[nL_n]` is then :math:`n\varepsilon\sum_i h_i/8` at *every*
    temperature, so it cancels in the slope. For a localized posterior (γ > 0) the slope is
    :math:`\hat\lambda(t) - d\hat\lambda/d\log t`, which for directions with :math:`th \gg \gamma` is
    λ to first order in :math:`\gamma/(th)`.

    Args:
        model_or_loss, *args, loss, where, key, num_chains, num_draws, num_burnin, batch_size, sampler,
            sampler_params, progress, chunk_size: as :func:`slt.estimate_llc`.
        localization: γ ≥ 0.
        step_size: SGLD step (scalar: the same at all temperatures; the bias then cancels in the slope, as
            above), one per temperature, or ``"auto"``: :func:`slt.estimate_llc`'s choice ε* at the top
            (stiffest) temperature t_max, scaled as :math:`\varepsilon_k = \varepsilon^* t_{max}/t_k` below it.
            With ε t fixed every temperature has the top's relative discretization bias (so the slope has it too)
            and relaxes its stiff directions in as many steps; the minibatch-noise bias, ∝ ε t², is smaller below
            the top; one step for all would leave the coldest temperatures under-relaxed. ``"auto"`` also sizes
            ``num_burnin``/``num_draws`` where they are None (else 1000 and 2000), with ``precision``,
            ``bias_tolerance`` and ``time_budget``.
        nbetas: the temperatures nβ_k (≥ 2 distinct values); default ``num_temperatures`` values
            geometric from :math:`t^*/\text{spread}` to :math:`t^*\cdot\text{spread}`, :math:`t^* = n/\log n`.
        common_random_numbers: one key for all temperatures (default) or independent keys.

    Returns:
        :class:`MultiTemperatureResult`.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> res = slt.llc_multitemperature(p.loss_fn, p.params, p.data, key=jax.random.key(0), localization=1.0,
        ...                                step_size=5e-3, num_temperatures=3, num_chains=2, num_draws=4000,
        ...                                num_burnin=100)
        >>> bool(abs(res.llc - 1.0) < 0.3)
        True
        >>> bool(np.all(np.diff(res.mean_nloss) < 0))  # E_β[nL_n] falls as the temperature 1/β falls
        True
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    gamma = _check_localization(localization, strict=False)
    n = target.num_data
    if nbetas is None:
        num_temperatures = _check_num_temperatures(num_temperatures)
        spread = validate.positive_float(spread, "spread")
        if spread <= 1:
            raise ValueError(f"`spread` must be > 1 (the grid spans t*/spread … t*·spread); got {spread}.")
        centre = default_nbeta(n)
        nbetas = np.geomspace(centre / spread, centre * spread, num_temperatures)
    else:
        nbetas = np.asarray(nbetas, dtype=np.float64)
        if nbetas.ndim != 1 or nbetas.size < 2:
            raise ValueError(f"`nbetas` must be a 1-D array of at least 2 temperatures; got shape {nbetas.shape}.")
        if not np.all(np.isfinite(nbetas) & (nbetas > 0)):
            raise ValueError(f"`nbetas` must be positive finite numbers; got {nbetas}.")
        if np.unique(nbetas).size < 2:
            raise ValueError("`nbetas` needs at least 2 distinct temperatures to fit a slope.")
    num = nbetas.size
    auto = isinstance(step_size, str)
    top_step, explicit = (step_size, None) if auto else _check_step_sizes(step_size, num)
    problem, key = _problem(
        target,
        step_size=top_step,
        localization=gamma,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        batch_size=batch_size,
        sampler=sampler,
        sampler_params=sampler_params,
        chunk_size=chunk_size,
        auto_nbeta=float(nbetas.max()),
        key=key,
        precision=precision,
        bias_tolerance=bias_tolerance,
        time_budget=time_budget,
        progress=progress,
    )
    s = problem.settings
    if explicit is not None:
        steps = explicit
    elif auto:  # ε t fixed from the top temperature's choice (see the docstring)
        steps = s.step_size * nbetas.max() / nbetas
    else:
        steps = np.full(num, s.step_size)
    keys = _same_key(key, num) if common_random_numbers else jax.random.split(key, num)
    run = _sample(problem, nbetas, steps, keys, progress=progress, description="multi-temperature LLC")
    messages = list(run.messages)
    mean_excess, se_excess = run.per_temperature()
    x = n / nbetas
    y = n * mean_excess  # E[nL_n] - nL_n(w*)
    var = (n * se_excess) ** 2
    if np.all(np.isfinite(var) & (var > 0)):
        w = 1.0 / var
    else:
        w = np.ones(num)
        messages.append("per-temperature variances unavailable: the fit is unweighted.")
    slope_coef, intercept_coef = _wls_coefficients(x, w)
    llc, llc_se = run.mean_and_se(n * slope_coef)
    icpt, icpt_se = run.mean_and_se(n * intercept_coef)
    residual = y - (icpt + llc * x)
    chi2 = float(np.sum(w * residual**2))
    dof = num - 2
    if dof > 0 and chi2 / dof > 4:
        messages.append(
            f"χ²/dof = {chi2 / dof:.3g}: E_β[nL_n] is not a straight line in 1/β over this range (or the errors "
            "are underestimated); narrow the range of nbetas."
        )
    return MultiTemperatureResult(
        llc=llc,
        llc_std=llc_se,
        intercept=float(n * problem.init_loss + icpt),
        intercept_std=icpt_se,
        nbetas=nbetas,
        inverse_betas=x,
        mean_nloss=n * (problem.init_loss + mean_excess),
        mean_nloss_std=n * se_excess,
        llc_per_temperature=nbetas * mean_excess,
        llc_per_temperature_std=nbetas * se_excess,
        fit_weights=w,
        slope_coefficients=slope_coef,
        chi2=chi2,
        dof=dof,
        init_loss=problem.init_loss,
        num_data=n,
        localization=gamma,
        step_sizes=np.asarray(steps, dtype=np.float64),
        batch_size=s.batch_size,
        sampler=s.sampler_name,
        rhat=run.rhat,
        excess_loss_trace=run.excess,
        diverged=run.diverged,
        warnings=messages,
        wall_time=run.wall_time + _auto_seconds(problem),
        calibration=None if problem.auto is None else problem.auto.calibration,
    )
