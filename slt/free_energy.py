r"""Local free energy, WBIC, multi-temperature LLC and the multiplicity: the temperature axis of the posterior.

Notation (SCIENCE.md §2): n data points, :math:`L_n` the mean negative log-likelihood, w* the centre,
:math:`t = n\beta` the inverse temperature on the likelihood, γ = ``localization`` and
:math:`\varphi_\gamma(w) = \mathcal N(w; w^*, \gamma^{-1} I)` the *normalized* Gaussian localizing prior.
:math:`\mathbb E_t` is the expectation under :math:`p_t(w) \propto e^{-t L_n(w)}\varphi_\gamma(w)`, the
local posterior of :mod:`slt.posterior` with ``nbeta = t``.

**Thermodynamic integration.** With :math:`Z(t) = \int e^{-t L_n(w)} \varphi_\gamma(w)\,dw` and
:math:`F(t) = -\log Z(t)`,

.. math::

    \frac{d}{dt}F(t) = \frac{\int L_n e^{-tL_n}\varphi_\gamma}{\int e^{-tL_n}\varphi_\gamma} = \mathbb E_t[L_n],
    \qquad F(0) = -\log\int\varphi_\gamma = 0,

so :math:`F(T) = \int_0^T \mathbb E_t[L_n]\,dt = T L_n(w^*) + \int_0^T e(t)\,dt` with the excess loss
:math:`e(t) = \mathbb E_t[L_n] - L_n(w^*)`. At :math:`T = n` (β = 1) this is
:math:`F_n = \int_0^1 \mathbb E_\beta[nL_n]\,d\beta` (SCIENCE.md §2), the local Bayes free energy.
:math:`e` is non-increasing (:math:`e'(t) = -\mathrm{Var}_t(L_n) \le 0`) and
:math:`t\,e(t) = \hat\lambda(t)`, the LLC estimator of :mod:`slt.llc` at ``nbeta = t``. The same run gives
:math:`F(T) - T\,\mathbb E_T[L_n] = \mathrm{KL}(p_T\,\|\,\varphi_\gamma) \ge 0` (since
:math:`\log p_T = -TL_n + \log\varphi_\gamma + F(T)`), which does not involve :math:`L_n(w^*)`.

**Which temperature grid.** In :math:`u = \log t` the integral is :math:`\int \hat\lambda(e^u)\,du`; the
integrand rises from 0 (:math:`\hat\lambda \approx t\,e(0)` while the prior dominates) to about λ once
the likelihood does, and for each direction of curvature h it does so like :math:`\frac12 x/(1+x)`,
:math:`x = t h/\gamma`: a sigmoid of width O(1) in u (:math:`|d\hat\lambda/du| = |\hat\lambda -
\mathrm{Var}_t(tL_n)|` stays O(λ)). So the nodes are equally spaced in log t (a geometric grid in nβ),
and the rule is the trapezoid rule in u. Both ends of the integrand are flat (it is ∝ t at the bottom and
saturates at the top), so the Euler–Maclaurin end corrections nearly vanish and the rule converges much
faster than its nominal O(h²): for a quadratic loss (d = 4, n = 1000, γ = 1) 8 nodes give a relative
error of 1e-4, and for :math:`K = w^4` 8 nodes give 1e-3 (computed against the closed forms). The error
is therefore dominated by Monte Carlo, which is why the default number of temperatures is modest.

**The bottom end.** :math:`\int_0^{t_1} e(t)\,dt` lies in :math:`[t_1 e(t_1), t_1 e(0)]` because e is
non-increasing. :math:`e(0) = \mathbb E_{\varphi_\gamma}[L_n] - L_n(w^*)` is an expectation under the
prior itself, which we sample *exactly* (independent Gaussian draws, no Markov chain), so we choose
:math:`t_1 = \tau / e(0)` with ``tail_tolerance`` τ (0.01 nats by default): the bracket is then at most τ
wide and we take its midpoint :math:`t_1 (e(0) + e(t_1))/2` (the trapezoid rule in t on
:math:`[0, t_1]`), whose error is at most τ/2 and in practice second order in :math:`t_1`.

**Step sizes.** At temperature t the potential :math:`tL_n + \frac\gamma2\lVert w-w^*\rVert^2` has curvature
about :math:`c(t) = t h + \gamma`. For a convex loss the same step at every temperature is stable wherever
it is stable at the top temperature, but at small t it mixes in :math:`\sim 2/(\varepsilon\gamma)` steps,
far too slowly.
By default the step at :math:`t_k` is

.. math:: \varepsilon_k = \varepsilon\,\max\Big(1, \frac{T h_* + \gamma}{t_k h_0 + \gamma}\Big),

with ε the given ``step_size`` (meant for the top temperature T), :math:`h_*` the Hessian's spectral radius
for :math:`L_n` at w* and :math:`h_0` the largest one at draws from the prior (power iteration on a data
subset, :func:`slt.calibration.hessian_radius`). For a quadratic loss (:math:`h_* = h_0`) this keeps
:math:`\varepsilon_k c(t_k)` equal to its value at T, so every temperature mixes in about as many steps as the
top one, with the same relative discretization bias :math:`\varepsilon c/4` (SCIENCE.md §1). When the
curvature grows away from w* (singular models: :math:`h_0 > h_*`), the scale-up is smaller:
:math:`\varepsilon_k c(t_k)` stays at most its top-temperature value wherever the typical curvature of
:math:`L_n` at temperature t is at most :math:`h_0` (and at least :math:`h_*` at T); for a purely singular
point (:math:`h_* = 0`, e.g. :math:`K = w^4`) it is the same step everywhere. Pass an array to choose every
step yourself.

**Multi-temperature LLC** (Wei, Murfet, Gong, Li, Gell-Redman, Quella, arXiv 2010.11560; Watanabe 2013):
:math:`\mathbb E_\beta[nL_n] \approx nL_n(w^*) + \lambda/\beta` plus terms that vary slowly with β, so λ
is the slope of :math:`\mathbb E_\beta[nL_n]` against 1/β. With a single step size for all temperatures
the leading discretization bias of SGLD is the *same* at every temperature for a quadratic loss
(:math:`n\varepsilon\sum_i h_i / 8`) and drops out of the slope.

**Multiplicity.** :math:`F_n = nL_n(w^*) + \lambda\log n - (m-1)\log\log n + O_p(1)` (Watanabe); fitted
across nested subsamples. See :func:`fit_free_energy_expansion` for why m is hard to resolve.

Uncertainties: every ``*_std`` here is the Monte-Carlo *standard error of the reported number*, computed
as the ArviZ MCSE of the per-draw linear combination of the per-temperature traces that gives the
estimate (so within-chain autocorrelation and, for common random numbers, the correlation between
temperatures are accounted for). This differs from :attr:`slt.LLCResult.llc_std`, the spread of one chain.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from slt import diagnostics
from slt._src.driver import as_key, run_chains, run_grid
from slt.calibration import hessian_radius
from slt.llc import SamplingSettings, SamplingWarning, _positive_float, check_loss_at_center, make_target
from slt.posterior import default_nbeta
from slt.samplers.base import normal_like
from slt.targets import Target

__all__ = [
    "LocalFreeEnergyResult",
    "MultiTemperatureResult",
    "MultiplicityResult",
    "WBICResult",
    "fit_free_energy_expansion",
    "fit_multiplicity",
    "llc_multitemperature",
    "local_free_energy",
    "wbic",
]

#: Prior draws at which the curvature is measured, power-iteration steps, examples in the Hessian's batch.
_CURVATURE_DRAWS = 8
_CURVATURE_ITERS = 30
_CURVATURE_BATCH = 512
#: The geometric grid spans at most this many decades below the top temperature.
_MAX_DECADES = 12.0


# ---------------------------------------------------------------------------------------------- results
@dataclasses.dataclass
class LocalFreeEnergyResult:
    r"""Result of :func:`local_free_energy`. K = number of temperatures, C = chains, D = draws.

    Attributes:
        free_energy: :math:`F = -\log\int e^{-n\beta L_n(w)}\mathcal N(w; w^*, \gamma^{-1}I)\,dw`.
        free_energy_std: its Monte-Carlo standard error (sampling noise only; see ``tail_uncertainty``
            and ``quadrature_error`` for the discretization).
        free_energy_excess: :math:`F - n\beta L_n(w^*) = \int_0^{n\beta} e(t)\,dt`.
        kl_divergence: :math:`F - n\beta\,\mathbb E_{n\beta}[L_n] = \mathrm{KL}(p_{n\beta}\,\|\,\varphi_\gamma)
            \ge 0`, what the data add to the prior. It has the expansion of F with a different O(1) term, one
            that does not depend on :math:`L_n(w^*)`; ``kl_divergence_std`` its standard error.
        init_loss: :math:`L_n(w^*)` on the full data.
        nbeta: the top temperature :math:`T = n\beta`.
        localization: γ.
        num_data: n.
        nbetas: (K,) the grid :math:`t_1 < \dots < t_K = T`, geometric.
        weights: (K,) quadrature weights on the excess losses :math:`e(t_k)`:
            ``free_energy_excess = prior_weight * prior_excess_loss + sum(weights * mean_excess_loss)``.
        prior_weight: weight of :math:`e(0)` (:math:`t_1/2`).
        prior_excess_loss: :math:`e(0) = \mathbb E_{\varphi_\gamma}[L_n] - L_n(w^*)`, exact prior draws.
        prior_excess_loss_std: its standard error.
        mean_excess_loss: (K,) :math:`e(t_k)`, paired estimate :math:`L_B(w) - L_B(w^*)` averaged.
        mean_nloss: (K,) :math:`\mathbb E_{t_k}[nL_n] = n (L_n(w^*) + e(t_k))`.
        mean_nloss_std: (K,) its standard error.
        llc_per_temperature: (K,) :math:`t_k e(t_k) = \hat\lambda(t_k)`, the integrand in log t.
        llc_per_temperature_std: (K,) its standard error.
        step_sizes: (K,) SGLD step at each temperature.
        tail: the estimate of :math:`\int_0^{t_1} e\,dt`; ``tail_uncertainty`` the half-width of its
            rigorous bracket :math:`[t_1 e(t_1), t_1 e(0)]`.
        quadrature_error: |trapezoid on every node − trapezoid on every other node|: a conservative
            estimate of the quadrature error (it includes some Monte-Carlo noise).
        discretization: the rule, in words.
        curvature_at_center, curvature_at_prior: :math:`h_*`, :math:`h_0` used for the step schedule (NaN
            when the steps were given or not scaled).
        rhat: (K,) R-hat of the excess-loss trace per temperature.
        excess_loss_trace: (K, C, D) per-draw :math:`L_B(w) - L_B(w^*)`.
        diverged: (K, C) chains whose loss became non-finite. A chain index that diverged at any temperature
            is left out at every temperature.
        warnings: plain-language findings.
    """

    free_energy: float
    free_energy_std: float
    free_energy_excess: float
    kl_divergence: float
    kl_divergence_std: float
    init_loss: float
    nbeta: float
    localization: float
    num_data: int
    nbetas: np.ndarray
    weights: np.ndarray
    prior_weight: float
    prior_excess_loss: float
    prior_excess_loss_std: float
    mean_excess_loss: np.ndarray
    mean_nloss: np.ndarray
    mean_nloss_std: np.ndarray
    llc_per_temperature: np.ndarray
    llc_per_temperature_std: np.ndarray
    step_sizes: np.ndarray
    tail: float
    tail_uncertainty: float
    quadrature_error: float
    discretization: str
    curvature_at_center: float
    curvature_at_prior: float
    rhat: np.ndarray
    excess_loss_trace: np.ndarray
    diverged: np.ndarray
    batch_size: int
    sampler: str
    warnings: list[str]
    wall_time: float

    def save(self, path, *, overwrite: bool = False) -> None:
        """Write this result to the Zarr directory ``path``; :func:`slt.load` reads it back (format:
        :mod:`slt._src.results`)."""
        from slt._src.results import save

        save(self, path, overwrite=overwrite)

    @property
    def num_temperatures(self) -> int:
        return int(self.nbetas.size)

    @property
    def num_chains(self) -> int:
        return int(self.excess_loss_trace.shape[1])

    @property
    def num_draws(self) -> int:
        return int(self.excess_loss_trace.shape[2])

    def summary(self) -> str:
        """The estimate, its error budget, and one row per temperature."""
        lines = [
            f"local free energy F = {self.free_energy:.6g} ± {self.free_energy_std:.2g} (MC std error)",
            f"  = nβ·L_n(w*) {self.nbeta * self.init_loss:.6g} + excess {self.free_energy_excess:.5g}; "
            f"nβ = {self.nbeta:.5g}, γ = {self.localization:.3g}, n = {self.num_data}",
            f"  {self.discretization}",
            f"  tail ∫_0^t1 e = {self.tail:.3g} ± {self.tail_uncertainty:.2g} (bracket), quadrature error "
            f"≲ {self.quadrature_error:.2g}, e(0) = {self.prior_excess_loss:.4g}",
            "        nβ      step     E[nL_n]    ± std       λ̂(t)    ± std    R-hat",
        ]
        for k in range(self.num_temperatures):
            lines.append(
                f"{self.nbetas[k]:>10.4g} {self.step_sizes[k]:>9.3g} {self.mean_nloss[k]:>11.6g} "
                f"{self.mean_nloss_std[k]:>8.2g} {self.llc_per_temperature[k]:>10.4g} "
                f"{self.llc_per_temperature_std[k]:>8.2g} {self.rhat[k]:>8.3f}"
            )
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"LocalFreeEnergyResult(free_energy={self.free_energy:.6g}, free_energy_std={self.free_energy_std:.3g}, "
            f"excess={self.free_energy_excess:.4g}, nbeta={self.nbeta:.4g}, temperatures={self.num_temperatures}, "
            f"warnings={len(self.warnings)})"
        )

    def to_arviz(self):
        """ArviZ data with ``excess_loss`` of dims (chain, draw, temperature)."""
        return diagnostics.to_arviz(
            {"excess_loss": np.moveaxis(self.excess_loss_trace, 0, -1)},
            attrs={"nbetas": self.nbetas.tolist(), "localization": self.localization, "init_loss": self.init_loss},
        )

    def plot(self):
        """The integrand :math:`\\hat\\lambda(t) = t\\,e(t)` against log t (the area under it is the excess
        free energy) and :math:`\\mathbb E_t[nL_n]` against t. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        ax1.errorbar(
            self.nbetas, self.llc_per_temperature, yerr=2 * self.llc_per_temperature_std, fmt="o-", ms=4, capsize=2
        )
        ax1.fill_between(self.nbetas, 0, self.llc_per_temperature, alpha=0.2)
        ax1.set_xscale("log")
        ax1.set_xlabel("t = nβ'")
        ax1.set_ylabel("t·(E_t[L_n] − L_n(w*))")
        ax1.set_title(f"integrand in log t; area = {self.free_energy_excess:.4g}")
        ax2.errorbar(self.nbetas, self.mean_nloss, yerr=2 * self.mean_nloss_std, fmt="o-", ms=4, capsize=2)
        ax2.axhline(self.num_data * self.init_loss, ls="--", c="k", lw=1, label="n L_n(w*)")
        ax2.set_xscale("log")
        ax2.set_xlabel("t = nβ'")
        ax2.set_ylabel("E_t[n L_n]")
        ax2.legend()
        fig.suptitle(f"F = {self.free_energy:.6g} ± {self.free_energy_std:.2g}")
        fig.tight_layout()
        return fig


@dataclasses.dataclass
class WBICResult:
    r"""Result of :func:`wbic`.

    Attributes:
        wbic: :math:`\mathbb E_{t}[nL_n]` at :math:`t = n/\log n`.
        wbic_std: its Monte-Carlo standard error.
        llc: :math:`\hat\lambda = t(\mathbb E_t[L_n] - L_n(w^*))`, so that
            ``wbic = n * init_loss + llc * log(n)``.
        llc_std: its standard error.
        init_loss, nbeta, num_data, localization, step_size, batch_size, sampler: settings and L_n(w*).
        excess_loss_trace: (C, D) per-draw :math:`L_B(w) - L_B(w^*)`.
        rhat, ess: diagnostics of that trace (non-diverged chains).
        diverged: (C,) chains whose loss became non-finite (excluded).
    """

    wbic: float
    wbic_std: float
    llc: float
    llc_std: float
    init_loss: float
    nbeta: float
    num_data: int
    localization: float
    step_size: float
    batch_size: int
    sampler: str
    excess_loss_trace: np.ndarray
    rhat: float
    ess: float
    diverged: np.ndarray
    warnings: list[str]
    wall_time: float

    def save(self, path, *, overwrite: bool = False) -> None:
        """Write this result to the Zarr directory ``path``; :func:`slt.load` reads it back (format:
        :mod:`slt._src.results`)."""
        from slt._src.results import save

        save(self, path, overwrite=overwrite)

    def summary(self) -> str:
        lines = [
            f"WBIC {self.wbic:.6g} ± {self.wbic_std:.2g} (MC std error) = n·L_n(w*) "
            f"{self.num_data * self.init_loss:.6g} + λ̂·log n with λ̂ = {self.llc:.4g} ± {self.llc_std:.2g}",
            f"nβ = n/log n = {self.nbeta:.5g}, γ = {self.localization:.3g}, ε = {self.step_size:.3g}, "
            f"batch {self.batch_size}, R-hat {self.rhat:.3f}, ESS {self.ess:.0f}",
        ]
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"WBICResult(wbic={self.wbic:.6g}, wbic_std={self.wbic_std:.3g}, llc={self.llc:.4g})"


@dataclasses.dataclass
class MultiTemperatureResult:
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

    def save(self, path, *, overwrite: bool = False) -> None:
        """Write this result to the Zarr directory ``path``; :func:`slt.load` reads it back (format:
        :mod:`slt._src.results`)."""
        from slt._src.results import save

        save(self, path, overwrite=overwrite)

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


@dataclasses.dataclass
class MultiplicityResult:
    r"""Result of :func:`fit_free_energy_expansion` / :func:`fit_multiplicity`.

    The model: :math:`F_j - n_j \bar L_j = \lambda\log n_j - (m-1)\log\log n_j + c\;[+\,d/\log n_j]`, with
    :math:`\bar L_j` the reference loss: :math:`L_{n_j}(w^*)` (Watanabe's form) or the posterior mean
    :math:`\mathbb E_{\beta=1}[L_{n_j}]`, which makes the left side :math:`\mathrm{KL}(p_1\,\|\,\varphi_\gamma)`.

    Attributes:
        llc, llc_std: λ and its standard error (``llc_std = 0`` when λ was fixed).
        multiplicity, multiplicity_std: m and its standard error.
        constant, constant_std: c.
        inverse_log_coefficient: d (NaN when that term is not fitted).
        resolved: whether the data pin down m well enough to tell neighbouring integers apart.
        message: why not (or a caveat), in words.
        num_data: (J,) the subsample sizes; free_energy, reference_loss: (J,) inputs.
        excess: (J,) :math:`F_j - n_j \bar L_j`, the regressand; excess_std: (J,) its standard errors.
        fitted: (J,) the model at the fit.
        reference: ``"center"`` or ``"posterior"`` (see :func:`fit_multiplicity`), or ``"given"``.
        chi2, dof: weighted residuals of the fit.
        covariance: covariance of the fitted coefficients (scaled up by χ²/dof when that exceeds 1).
        results: the :class:`LocalFreeEnergyResult` of each subsample (when computed by
            :func:`fit_multiplicity`).
        subsample_indices: (n,) the permutation of the data; subsample j is its first ``num_data[j]``
            entries (when computed by :func:`fit_multiplicity`).
    """

    llc: float
    llc_std: float
    multiplicity: float
    multiplicity_std: float
    constant: float
    constant_std: float
    inverse_log_coefficient: float
    resolved: bool
    message: str
    num_data: np.ndarray
    free_energy: np.ndarray
    reference_loss: np.ndarray
    excess: np.ndarray
    excess_std: np.ndarray
    fitted: np.ndarray
    chi2: float
    dof: int
    covariance: np.ndarray
    llc_fixed: bool
    reference: str = "given"
    results: list = dataclasses.field(default_factory=list)
    subsample_indices: np.ndarray | None = None

    def save(self, path, *, overwrite: bool = False) -> None:
        """Write this result to the Zarr directory ``path``; :func:`slt.load` reads it back (format:
        :mod:`slt._src.results`)."""
        from slt._src.results import save

        save(self, path, overwrite=overwrite)

    def summary(self) -> str:
        lam = f"λ = {self.llc:.4g}" + (" (fixed)" if self.llc_fixed else f" ± {self.llc_std:.2g}")
        lines = [
            f"{lam}, m = {self.multiplicity:.3g} ± {self.multiplicity_std:.2g}, c = {self.constant:.4g} ± "
            f"{self.constant_std:.2g}; χ²/dof = {self.chi2:.3g}/{self.dof}",
            f"{'resolved' if self.resolved else 'NOT resolved'}: {self.message}",
            "          n      F_n − n·L_ref    ± std      fit",
        ]
        for j in range(self.num_data.size):
            lines.append(
                f"{self.num_data[j]:>11d} {self.excess[j]:>17.5g} {self.excess_std[j]:>9.2g} {self.fitted[j]:>9.5g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MultiplicityResult(llc={self.llc:.4g}, multiplicity={self.multiplicity:.3g} ± "
            f"{self.multiplicity_std:.2g}, resolved={self.resolved})"
        )

    def plot(self):
        """:math:`F_n - nL_n(w^*)` against log n with the fit. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ln = np.log(self.num_data)
        ax.errorbar(ln, self.excess, yerr=2 * self.excess_std, fmt="o", capsize=3, label="thermodynamic integration")
        ax.plot(
            ln,
            self.fitted,
            "-",
            lw=1,
            label=f"λ = {self.llc:.3g}, m = {self.multiplicity:.2g} ± {self.multiplicity_std:.1g}",
        )
        ax.set_xlabel("log n")
        ax.set_ylabel("F_n − n L_ref" + (" = KL(posterior ‖ prior)" if self.reference == "posterior" else ""))
        ax.legend()
        fig.tight_layout()
        return fig


# -------------------------------------------------------------------------------------- device helpers
def _take(data, idx):
    return jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data)


def _prior_draw(key, center, localization):
    noise = normal_like(key, center)
    scale = jax.lax.rsqrt(localization)
    return jax.tree_util.tree_map(lambda c, z: (c + scale * z).astype(c.dtype), center, noise)


@functools.partial(jax.jit, static_argnames=("loss", "num_samples", "batch_size", "curvature_batch"))
def _prior_statistics(
    loss, center, frozen, data, example_losses, key, localization, num_samples, batch_size, curvature_batch
):
    r"""What exact draws w ~ N(w*, γ⁻¹I) from the prior tell us, in one compiled call.

    Returns ``(excess, curvatures)``: the paired :math:`L_B(w) - L_B(w^*)` at ``num_samples`` draws (one
    minibatch each), and, if ``curvature_batch`` > 0, the largest Hessian eigenvalue of the loss on a random
    subset of that many examples (spectral radius, :func:`slt.calibration.hessian_radius`) at w* (entry 0) and at
    ``_CURVATURE_DRAWS`` further prior draws. Sequential ``lax.map`` loops: cheap to compile, and memory stays
    that of one minibatch evaluation.
    """
    num_data = example_losses.shape[0]
    excess_key, subset_key, curvature_key = jax.random.split(key, 3)

    def excess(k):
        draw_key, batch_key = jax.random.split(k)
        w = _prior_draw(draw_key, center, localization)
        if batch_size == num_data:
            return loss(w, frozen, data) - jnp.mean(example_losses)
        idx = jax.random.randint(batch_key, (batch_size,), 0, num_data)
        return loss(w, frozen, _take(data, idx)) - jnp.mean(example_losses[idx])

    prior_excess = jax.lax.map(excess, jax.random.split(excess_key, num_samples))
    if not curvature_batch:
        return prior_excess, jnp.zeros((_CURVATURE_DRAWS + 1,), prior_excess.dtype)
    if curvature_batch == num_data:
        batch = data
    else:
        batch = _take(data, jax.random.choice(subset_key, num_data, (curvature_batch,), replace=False))
    _, unravel = ravel_pytree(center)

    def top_eigenvalue(args):
        k, at_center = args
        draw_key, start_key = jax.random.split(k)
        draw = _prior_draw(draw_key, center, localization)
        position = jax.tree_util.tree_map(lambda c, d: jnp.where(at_center, c, d), center, draw)
        flat, _ = ravel_pytree(position)
        v0 = jax.random.normal(start_key, flat.shape, flat.dtype)
        return hessian_radius(lambda v: loss(unravel(v), frozen, batch), flat, v0, _CURVATURE_ITERS)

    flags = jnp.arange(_CURVATURE_DRAWS + 1) == 0
    curvatures = jax.lax.map(top_eigenvalue, (jax.random.split(curvature_key, _CURVATURE_DRAWS + 1), flags))
    return prior_excess, curvatures


def _curvature_scales(curvatures: np.ndarray) -> tuple[float, float]:
    """(h_*, h_0): the Hessian's spectral radius at w* and the largest one at the prior draws (at least h_*);
    non-finite radii are ignored."""
    out = np.asarray(curvatures, dtype=np.float64)
    h_center = float(out[0]) if np.isfinite(out[0]) else 0.0
    at_prior = out[1:][np.isfinite(out[1:])]
    return h_center, max(float(at_prior.max()) if at_prior.size else h_center, h_center)


# ------------------------------------------------------------------------------------------ validation
def _check_localization(localization, *, strict: bool) -> float:
    try:
        value = float(localization)
    except (TypeError, ValueError):
        raise ValueError(f"`localization` (γ) must be a number; got {localization!r}.") from None
    if strict and not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"`localization` (γ) must be > 0: the free energy uses the normalized prior N(w*, γ⁻¹I), which "
            f"does not exist for γ = {value!r}."
        )
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"`localization` (γ) must be a finite number >= 0; got {localization!r}.")
    return value


def _check_num_temperatures(num_temperatures, minimum: int = 2) -> int:
    if isinstance(num_temperatures, bool) or not isinstance(num_temperatures, (int, np.integer)):
        raise ValueError(f"`num_temperatures` must be an integer >= {minimum}; got {num_temperatures!r}.")
    if num_temperatures < minimum:
        raise ValueError(f"`num_temperatures` must be >= {minimum}; got {num_temperatures}.")
    return int(num_temperatures)


def _check_step_sizes(step_size, num_temperatures: int) -> tuple[float, np.ndarray | None]:
    """A scalar step (to be scheduled) or an explicit array of one step per temperature."""
    try:
        arr = None if isinstance(step_size, str) else np.asarray(step_size, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1:
        raise ValueError(f"`step_size` must be a positive number or an array of {num_temperatures}; got {step_size!r}.")
    if arr.ndim == 1:
        if arr.shape != (num_temperatures,):
            raise ValueError(
                f"`step_size` as an array needs one step per temperature ({num_temperatures}); got shape {arr.shape}."
            )
        if not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError(f"`step_size` entries must be positive finite numbers; got {arr}.")
        return float(arr.max()), arr
    return float(arr), None


@dataclasses.dataclass(frozen=True)
class _Problem:
    target: Target
    settings: SamplingSettings
    per_example: np.ndarray

    @property
    def init_loss(self) -> float:
        return float(np.mean(self.per_example, dtype=np.float64))

    @property
    def num_data(self) -> int:
        return self.target.num_data


def _problem(
    target: Target,
    *,
    step_size: float,
    localization: float,
    num_chains,
    num_draws,
    num_burnin,
    batch_size,
    sampler,
    sampler_params,
    chunk_size,
) -> _Problem:
    settings = SamplingSettings.validated(
        num_data=target.num_data,
        step_size=step_size,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        batch_size=batch_size,
        localization=localization,
        sampler=sampler,
        sampler_params=sampler_params,
        chunk_size=chunk_size,
    )
    per_example = check_loss_at_center(target, settings.chunk_size)
    return _Problem(target, settings, per_example)


# ---------------------------------------------------------------------------------------------- sampling
@dataclasses.dataclass
class _Run:
    excess: np.ndarray  # (K, C, D) float64, L_B(w) - L_B(w*) of the kept draws
    healthy: np.ndarray  # (C,) chain index finite at every temperature
    diverged: np.ndarray  # (K, C)
    rhat: np.ndarray  # (K,)
    wall_time: float
    messages: list[str]

    def combined(self, coefficients) -> np.ndarray:
        """Per-draw ``sum_k coefficients[k] * excess[k]`` over the healthy chains, shape (C_h, D)."""
        coefficients = np.asarray(coefficients, dtype=np.float64)
        return np.tensordot(coefficients, self.excess[:, self.healthy], axes=1)

    def mean_and_se(self, coefficients) -> tuple[float, float]:
        z = self.combined(coefficients)
        if z.size == 0:
            return float("nan"), float("nan")
        return float(z.mean()), _mcse(z)

    def per_temperature(self) -> tuple[np.ndarray, np.ndarray]:
        k = self.excess.shape[0]
        stats = [self.mean_and_se(np.eye(k)[i]) for i in range(k)]
        return np.array([s[0] for s in stats]), np.array([s[1] for s in stats])


def _mcse(z: np.ndarray) -> float:
    """MCSE of the mean of a (chain, draw) array; falls back to the spread of chain means if ArviZ cannot."""
    se = diagnostics.mcse(z)
    if not np.isfinite(se):
        means = z.mean(axis=1)
        se = float(means.std(ddof=1) / math.sqrt(means.size)) if means.size > 1 else float("nan")
    return float(se)


def _sample(problem: _Problem, nbetas, step_sizes, keys, *, progress: bool, description: str) -> _Run:
    """All temperatures × chains in one jitted computation: :func:`slt._src.driver.run_grid`, or
    :func:`slt._src.driver.run_chains` for a single temperature (the same chains; it compiles about 3× faster)."""
    s = problem.settings
    common = dict(
        example_losses_at_center=problem.per_example,
        localization=s.localization,
        num_chains=s.num_chains,
        num_steps=s.num_burnin + s.num_draws,
        batch_size=s.batch_size,
        sampler=s.sampler,
        progress=progress,
        description=description,
    )
    start = time.perf_counter()
    if len(nbetas) == 1:
        params = {**dict(s.sampler_params), "step_size": float(step_sizes[0])}
        one = run_chains(problem.target, key=keys[0], nbeta=float(nbetas[0]), sampler_params=params, **common)
        trace = jax.tree_util.tree_map(lambda x: x[None], (one.loss, one.loss_at_center))
    else:
        params = {**dict(s.sampler_params), "step_size": np.asarray(step_sizes, dtype=np.float32)}
        grid = run_grid(
            problem.target, keys=keys, nbeta=np.asarray(nbetas, dtype=np.float32), sampler_params=params, **common
        )
        trace = (grid.loss, grid.loss_at_center)
    wall = time.perf_counter() - start
    losses = np.asarray(trace[0], dtype=np.float64)
    centre = np.asarray(trace[1], dtype=np.float64)
    diverged = ~np.all(np.isfinite(losses), axis=2)  # (K, C)
    healthy = ~diverged.any(axis=0)
    excess = (losses - centre)[:, :, s.num_burnin :]
    messages: list[str] = []
    if diverged.any():
        temps = np.flatnonzero(diverged.any(axis=1))
        messages.append(
            f"{int(diverged.sum())} chain(s) diverged (loss became non-finite) at nβ = "
            f"{', '.join(f'{nbetas[k]:.4g}' for k in temps)}; those chain indices are left out at every "
            "temperature. Lower step_size (or raise localization)."
        )
        warnings.warn(messages[-1], SamplingWarning, stacklevel=3)
    if not healthy.any():
        messages.append("every chain index diverged somewhere: there is no estimate.")
    rhat = np.array([diagnostics.rhat(excess[k][healthy]) if healthy.sum() > 1 else np.nan for k in range(len(nbetas))])
    bad = np.flatnonzero(rhat > 1.05)
    if bad.size:
        messages.append(
            f"R-hat > 1.05 at nβ = {', '.join(f'{nbetas[k]:.4g}' for k in bad)}: chains disagree there; run more "
            "burn-in/draws."
        )
    return _Run(excess, healthy, diverged, rhat, wall, messages)


def _same_key(key, count: int):
    return jax.vmap(lambda _: key)(jnp.arange(count))


# ------------------------------------------------------------------------------------ free energy (TI)
def _trapezoid_log(nbetas: np.ndarray) -> np.ndarray:
    """Weights on e(t_k) of the trapezoid rule in u = log t for ∫ t e(t) du (nodes need not be uniform)."""
    u = np.log(nbetas)
    w = np.zeros_like(u)
    du = np.diff(u)
    w[:-1] += du / 2
    w[1:] += du / 2
    return w * nbetas


def _ti_estimate(nbetas, excess, e0, idx) -> float:
    """Tail (trapezoid in t on [0, t_first]) + trapezoid in log t over the nodes ``idx``."""
    t = nbetas[idx]
    e = excess[idx]
    return float(t[0] * (e0 + e[0]) / 2 + np.sum(_trapezoid_log(t) * e))


def _free_energy_of_target(
    target: Target,
    *,
    key,
    localization,
    step_size,
    nbeta,
    num_temperatures,
    min_nbeta,
    tail_tolerance,
    scale_step_size,
    num_prior_samples,
    num_chains,
    num_draws,
    num_burnin,
    batch_size,
    sampler,
    sampler_params,
    progress,
    chunk_size,
    step_reference_nbeta=None,
) -> LocalFreeEnergyResult:
    """``step_reference_nbeta``: the temperature ``step_size`` is meant for (default the top one); the
    schedule scales from there, so one step suits a series of runs with different top temperatures."""
    gamma = _check_localization(localization, strict=True)
    num_temperatures = _check_num_temperatures(num_temperatures)
    top_step, explicit_steps = _check_step_sizes(step_size, num_temperatures)
    n = target.num_data
    top = float(n) if nbeta is None else _positive_float(nbeta, "nbeta")
    tail_tolerance = _positive_float(tail_tolerance, "tail_tolerance")
    if (
        isinstance(num_prior_samples, bool)
        or not isinstance(num_prior_samples, (int, np.integer))
        or num_prior_samples < 2
    ):
        raise ValueError(f"`num_prior_samples` must be an integer >= 2; got {num_prior_samples!r}.")
    if min_nbeta is not None:
        min_nbeta = _positive_float(min_nbeta, "min_nbeta")
        if min_nbeta >= top:
            raise ValueError(f"`min_nbeta` ({min_nbeta:g}) must be below the top temperature nβ = {top:g}.")
    problem = _problem(
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
    )
    s = problem.settings
    prior_key, run_key = jax.random.split(key)
    messages: list[str] = []

    # e(0) = E_prior[L_n] - L_n(w*) from exact prior draws (paired minibatch estimate), and the curvatures
    # that set the step schedule.
    scheduled = explicit_steps is None and scale_step_size
    prior, curvatures = _prior_statistics(
        target.loss,
        target.position,
        target.frozen,
        target.data,
        jnp.asarray(problem.per_example),
        prior_key,
        jnp.float32(gamma),
        int(num_prior_samples),
        s.batch_size,
        min(n, _CURVATURE_BATCH) if scheduled else 0,
    )
    prior = np.asarray(prior, dtype=np.float64)
    if not np.all(np.isfinite(prior)):
        raise ValueError(
            f"the loss is not finite at {int(np.sum(~np.isfinite(prior)))} of {prior.size} draws from the "
            f"localizing prior N(w*, γ⁻¹I) with γ = {gamma:g}: the normalized-prior free energy is not defined. "
            "Raise `localization`."
        )
    e0 = float(prior.mean())
    e0_se = float(prior.std(ddof=1) / math.sqrt(prior.size))

    # The grid: t_1 = tail_tolerance / e(0), clipped to [T·10^-12, T/100], geometric up to T.
    if min_nbeta is None:
        lowest = top * 10.0 ** (-_MAX_DECADES)
        t1 = tail_tolerance / abs(e0) if e0 != 0 else lowest
        t1 = float(np.clip(t1, lowest, top / 100))
        if e0 <= 0:
            messages.append(
                f"the mean loss under the prior is not above L_n(w*) (e(0) = {e0:.3g}): w* is not a minimum on "
                f"the prior's scale; the grid starts at nβ = {t1:.3g} and the tail estimate is unreliable."
            )
    else:
        t1 = min_nbeta
    nbetas = np.geomspace(t1, top, num_temperatures)

    # Step sizes: explicit, or scaled up where the likelihood's curvature is smaller.
    h_center = h_prior = float("nan")
    if explicit_steps is not None:
        steps = explicit_steps
    elif scale_step_size:
        h_center, h_prior = _curvature_scales(curvatures)
        reference = top if step_reference_nbeta is None else max(float(step_reference_nbeta), top)
        steps = top_step * np.maximum(1.0, (reference * h_center + gamma) / (nbetas * h_prior + gamma))
    else:
        steps = np.full(num_temperatures, top_step)

    run = _sample(
        problem,
        nbetas,
        steps,
        jax.random.split(run_key, num_temperatures),
        progress=progress,
        description="free energy",
    )
    messages.extend(run.messages)
    weights = _trapezoid_log(nbetas)
    weights[0] += nbetas[0] / 2
    prior_weight = nbetas[0] / 2
    excess_part, excess_se = run.mean_and_se(weights)
    free_energy_excess = prior_weight * e0 + excess_part
    free_energy_std = math.hypot(excess_se, prior_weight * e0_se)
    kl_coefficients = weights.copy()
    kl_coefficients[-1] -= top  # F - T E_T[L_n] = excess - T e(T)
    kl_part, kl_se = run.mean_and_se(kl_coefficients)
    mean_excess, se_excess = run.per_temperature()

    full = _ti_estimate(nbetas, mean_excess, e0, np.arange(num_temperatures))
    half = _ti_estimate(nbetas, mean_excess, e0, np.arange(num_temperatures - 1, -1, -2)[::-1])
    quadrature_error = abs(full - half) if num_temperatures >= 3 else float("nan")
    tail = nbetas[0] * (e0 + mean_excess[0]) / 2
    tail_uncertainty = abs(nbetas[0] * (e0 - mean_excess[0]) / 2)
    llc_t = nbetas * mean_excess
    if np.isfinite(llc_t).all() and llc_t[0] > 0.05 * max(abs(llc_t[-1]), 1e-12):
        messages.append(
            f"at the lowest temperature λ̂(t_1) = {llc_t[0]:.3g} is not small next to λ̂(T) = {llc_t[-1]:.3g}; the "
            "tail estimate leans on e(0). Lower `min_nbeta` (or `tail_tolerance`)."
        )
    description = (
        f"trapezoid rule in log nβ on {num_temperatures} geometric nodes nβ = {nbetas[0]:.3g} … {top:.4g} "
        f"(spacing ×{(nbetas[1] / nbetas[0]):.3g}); [0, {nbetas[0]:.3g}] by the trapezoid rule in nβ with e(0) "
        "from exact prior draws"
    )
    result = LocalFreeEnergyResult(
        free_energy=float(top * problem.init_loss + free_energy_excess),
        free_energy_std=free_energy_std,
        free_energy_excess=float(free_energy_excess),
        kl_divergence=float(prior_weight * e0 + kl_part),
        kl_divergence_std=math.hypot(kl_se, prior_weight * e0_se),
        init_loss=problem.init_loss,
        nbeta=top,
        localization=gamma,
        num_data=n,
        nbetas=nbetas,
        weights=weights,
        prior_weight=float(prior_weight),
        prior_excess_loss=e0,
        prior_excess_loss_std=e0_se,
        mean_excess_loss=mean_excess,
        mean_nloss=n * (problem.init_loss + mean_excess),
        mean_nloss_std=n * se_excess,
        llc_per_temperature=llc_t,
        llc_per_temperature_std=nbetas * se_excess,
        step_sizes=np.asarray(steps, dtype=np.float64),
        tail=float(tail),
        tail_uncertainty=float(tail_uncertainty),
        quadrature_error=float(quadrature_error),
        discretization=description,
        curvature_at_center=h_center,
        curvature_at_prior=h_prior,
        rhat=run.rhat,
        excess_loss_trace=run.excess,
        diverged=run.diverged,
        batch_size=s.batch_size,
        sampler=s.sampler_name,
        warnings=messages,
        wall_time=run.wall_time,
    )
    return result


def local_free_energy(
    model_or_loss,
    *args,
    key,
    localization,
    step_size,
    nbeta: float | None = None,
    num_temperatures: int = 12,
    min_nbeta: float | None = None,
    tail_tolerance: float = 0.01,
    scale_step_size: bool = True,
    num_prior_samples: int = 256,
    num_chains: int = 4,
    num_draws: int = 2000,
    num_burnin: int = 1000,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
) -> LocalFreeEnergyResult:
    r"""The local free energy by thermodynamic integration over the inverse temperature.

    .. math::

        F = -\log\int e^{-n\beta L_n(w)}\,\mathcal N(w; w^*, \gamma^{-1}I)\,dw
          = n\beta L_n(w^*) + \int_0^{n\beta}\big(\mathbb E_t[L_n] - L_n(w^*)\big)\,dt

    with a *normalized* Gaussian prior (so F(0) = 0; the identity :math:`dF/dt = \mathbb E_t[L_n]` is
    derived in the module docstring). :math:`\mathbb E_t[L_n] - L_n(w^*)` is estimated per draw by the
    paired minibatch difference :math:`L_B(w) - L_B(w^*)`; every temperature runs as one more batch axis of
    a single jitted computation (:func:`slt._src.driver.run_grid`), with independent keys per temperature.

    Grid and quadrature (module docstring): ``num_temperatures`` nodes equally spaced in log nβ from
    :math:`t_1 = \text{tail\_tolerance} / e(0)` to nβ, the trapezoid rule in log nβ, and
    :math:`[0, t_1]` from :math:`e(0)`, the prior's mean excess loss, computed from exact prior draws.
    Step sizes: ``step_size`` is the SGLD step at the top temperature; with ``scale_step_size`` it is raised
    at lower temperatures as :math:`\varepsilon\max(1, (T h_* + \gamma)/(t h_0 + \gamma))` (module
    docstring), or pass one step per temperature as an array.

    With the default nβ = n (β = 1) and a loss that is the mean negative log-likelihood, F is the local
    Bayes free energy :math:`-\log\int\prod_i p(y_i|x_i,w)\,\varphi_\gamma(w)\,dw`. Note that minibatch
    gradient noise grows with nβ (it inflates the sampled variance by about :math:`\varepsilon t^2
    \sigma_g^2/(4m)` for batch size m): at nβ = n it is log n times larger than at the LLC's n/log n, so use
    bigger batches (or full batches) or smaller steps than for :func:`slt.estimate_llc`.

    Args:
        model_or_loss, *args, loss, where: as :func:`slt.estimate_llc`.
        key: a ``jax.random.key``.
        localization: γ > 0 (the prior must be normalizable).
        step_size: ε at the top temperature (scalar), or an array of ``num_temperatures`` steps.
        nbeta: the top temperature nβ; default n (β = 1).
        num_temperatures: nodes of the grid (≥ 2).
        min_nbeta: the lowest node; default ``tail_tolerance / e(0)``, clipped to [nβ·1e-12, nβ/100].
        tail_tolerance: bound, in nats, on the width of the bracket of :math:`\int_0^{t_1} e\,dt`.
        scale_step_size: raise the step at lower temperatures (see above).
        num_prior_samples: exact prior draws for :math:`e(0)`.
        num_chains, num_draws, num_burnin, batch_size, sampler, sampler_params, progress, chunk_size: as
            :func:`slt.estimate_llc`, per temperature.

    Returns:
        :class:`LocalFreeEnergyResult`.

    Raises:
        ValueError: bad arguments (each message names the argument), or a loss that is not finite at w*
            or at draws from the prior.
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    return _free_energy_of_target(
        target,
        key=key,
        localization=localization,
        step_size=step_size,
        nbeta=nbeta,
        num_temperatures=num_temperatures,
        min_nbeta=min_nbeta,
        tail_tolerance=tail_tolerance,
        scale_step_size=scale_step_size,
        num_prior_samples=num_prior_samples,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        batch_size=batch_size,
        sampler=sampler,
        sampler_params=sampler_params,
        progress=progress,
        chunk_size=chunk_size,
    )


# ------------------------------------------------------------------------------------------------- WBIC
def wbic(
    model_or_loss,
    *args,
    key,
    localization,
    step_size,
    num_chains: int = 4,
    num_draws: int = 2000,
    num_burnin: int = 1000,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
) -> WBICResult:
    r"""Watanabe's widely applicable Bayesian information criterion of the local posterior.

    .. math:: \mathrm{WBIC} = \mathbb E_{t}[nL_n(w)],\qquad t = n\beta = n/\log n

    (Watanabe, JMLR 14, 2013, arXiv 1208.6338), with the localizing prior :math:`\mathcal N(w^*, \gamma^{-1}I)`
    as the prior and the paired per-draw estimate :math:`nL_B(w) - nL_B(w^*) + nL_n(w^*)`. Equivalently
    :math:`\mathrm{WBIC} = nL_n(w^*) + \hat\lambda\log n` with :math:`\hat\lambda` the LLC estimate of
    :func:`slt.estimate_llc` at its default temperature (reported as ``llc``).

    **Bias.** WBIC and the free energy share their leading terms, :math:`nL_n(w_0) + \lambda\log n`, but not
    the rest: WBIC has no :math:`-(m-1)\log\log n` term and a different O(1) term, and the temperature at
    which :math:`\mathbb E_\beta[nL_n]` equals :math:`F_n` exactly is only asymptotically 1/log n. Friel,
    McKeone, Oates & Pettitt (arXiv 1501.05447) found that WBIC systematically overestimates the evidence
    (underestimates F) at small n unless the prior is informative, and Imai (arXiv 1908.10572) identified
    an O(1) term of WBIC responsible for the overestimation and proposed removing it. For the local
    posterior the gap is explicit in the regular case (quadratic :math:`L_n`, Hessian eigenvalues
    :math:`h_i`, :math:`t = n/\log n`; F at β = 1):

    .. math::

        \mathrm{WBIC} - F = \frac12\sum_i\Big[\log n\,\frac{t h_i}{t h_i + \gamma}
        - \log\Big(1 + \frac{n h_i}{\gamma}\Big)\Big]
        \;\longrightarrow\; -\frac12\sum_i \log\frac{h_i}{\gamma} \quad (n h_i \gg \gamma\log^2 n),

    the prior's normalization, which WBIC does not see; it has either sign (for linear regression with
    d = 4, n = 1000, γ = 1 it is -0.10 nats, mostly from the finite-n term :math:`-\frac\gamma2
    \frac{\log^2 n}{n}\sum_i h_i^{-1}`). **What we do:** we report WBIC as defined, without a correction
    (we have not implemented Imai's adjustment, whose O(1) term we could not verify here); when the O(1)
    terms matter, e.g. comparing points with similar λ, use
    :func:`local_free_energy`, which has no such bias (only Monte-Carlo and a quantified quadrature error).

    Args:
        as :func:`slt.estimate_llc` (``localization`` γ ≥ 0 is required; the temperature is fixed at
        n/log n). ``step_size`` is the SGLD step.

    Returns:
        :class:`WBICResult`.
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    gamma = _check_localization(localization, strict=False)
    problem = _problem(
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
    )
    n = target.num_data
    t = default_nbeta(n)
    s = problem.settings
    run = _sample(problem, np.array([t]), np.array([s.step_size]), [key], progress=progress, description="WBIC")
    mean, se = run.mean_and_se([1.0])
    healthy = run.excess[0][run.healthy]
    return WBICResult(
        wbic=float(n * (problem.init_loss + mean)),
        wbic_std=float(n * se),
        llc=float(t * mean),
        llc_std=float(t * se),
        init_loss=problem.init_loss,
        nbeta=t,
        num_data=n,
        localization=gamma,
        step_size=s.step_size,
        batch_size=s.batch_size,
        sampler=s.sampler_name,
        excess_loss_trace=run.excess[0],
        rhat=float(run.rhat[0]),
        ess=diagnostics.ess(healthy) if healthy.size else float("nan"),
        diverged=run.diverged[0],
        warnings=run.messages,
        wall_time=run.wall_time,
    )


# ---------------------------------------------------------------------------------- multi-temperature
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
    num_draws: int = 2000,
    num_burnin: int = 1000,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
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
        step_size: SGLD step (scalar: the same at all temperatures), or one per temperature.
        nbetas: the temperatures nβ_k (≥ 2 distinct values); default ``num_temperatures`` values
            geometric from :math:`t^*/\text{spread}` to :math:`t^*\cdot\text{spread}`, :math:`t^* = n/\log n`.
        common_random_numbers: one key for all temperatures (default) or independent keys.

    Returns:
        :class:`MultiTemperatureResult`.
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    gamma = _check_localization(localization, strict=False)
    n = target.num_data
    if nbetas is None:
        num_temperatures = _check_num_temperatures(num_temperatures)
        spread = _positive_float(spread, "spread")
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
    top_step, explicit = _check_step_sizes(step_size, num)
    steps = explicit if explicit is not None else np.full(num, top_step)
    problem = _problem(
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
    )
    s = problem.settings
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
        wall_time=run.wall_time,
    )


# ----------------------------------------------------------------------------------------- multiplicity
#: ``resolved`` needs the standard error of m below this (neighbouring integers ~2σ apart) ...
MULTIPLICITY_STD_MAX = 0.5
#: ... and log log n to span at least this much.
LOGLOG_RANGE_MIN = 0.5


def fit_free_energy_expansion(
    num_data,
    free_energy,
    reference_loss,
    free_energy_std=None,
    *,
    llc: float | None = None,
    inverse_log_term: bool = False,
    warn: bool = True,
) -> MultiplicityResult:
    r"""Fit :math:`F_n - n\bar L_n = \lambda\log n - (m-1)\log\log n + c\;[+\,d/\log n]` across sizes n.

    Watanabe's expansion of the free energy (SCIENCE.md §2), :math:`F_n = nL_n(w_0) + \lambda\log n -
    (m-1)\log\log n + O_p(1)`, with its O(1) term taken constant, by weighted least squares (weights
    :math:`1/\sigma_j^2` from ``free_energy_std``; the coefficient covariance is scaled by χ²/dof when that
    exceeds 1, so misfit widens the error bars). The reference loss :math:`\bar L_n` is
    :math:`L_n(w^*)` for Watanabe's form, or any other per-size loss whose difference from it is
    :math:`O_p(1)/n`, such as the posterior mean :math:`\mathbb E_{\beta=1}[L_n]` (see
    :func:`fit_multiplicity`).

    **Why m is hard.** Over any practical range :math:`\log\log n` is almost a linear function of
    :math:`\log n`, so m is nearly confounded with λ and c, and the terms left out, :math:`O(1/\log n)` when
    m > 1, bias it. Exact free energies of :math:`K = x^2y^2` (λ = ½, m = 2, γ = 1; 1-D quadrature) over
    n = 1e2 … 1e6 give m = 1.61 from this fit (1.78 with λ fixed at ½); adding the :math:`d/\log n` term
    (``inverse_log_term=True``) gives 1.89 (1.95), at the price of much larger statistical errors. Fixing λ
    (``llc=``) when it is known from theory or from a precise LLC estimate helps the most.

    ``resolved`` is False, with a :class:`UserWarning` saying so (unless ``warn=False``), when the standard
    error of m exceeds ``MULTIPLICITY_STD_MAX`` = 0.5 or log log n spans less than ``LOGLOG_RANGE_MIN`` =
    0.5 (n_max < n_min^1.65). Even when resolved, read m as "about 1" or "clearly above 1".

    Args:
        num_data: (J,) sizes n_j (distinct, ≥ 3).
        free_energy: (J,) :math:`F_{n_j}`.
        reference_loss: (J,) :math:`\bar L_{n_j}`, e.g. :math:`L_{n_j}(w^*)` of each subsample.
        free_energy_std: (J,) standard errors of :math:`F_{n_j} - n_j\bar L_{n_j}`; ``None`` for an
            unweighted fit (its error bars then come from the residuals alone).
        llc: fix λ at this value and fit only m and c.
        inverse_log_term: also fit a :math:`d/\log n` term.
        warn: emit the warning when m is not resolved.
    """
    n = np.asarray(num_data, dtype=np.float64)
    f = np.asarray(free_energy, dtype=np.float64)
    lc = np.asarray(reference_loss, dtype=np.float64)
    if n.ndim != 1 or f.shape != n.shape or lc.shape != n.shape:
        raise ValueError(
            f"`num_data`, `free_energy` and `reference_loss` must be 1-D arrays of one length; got shapes "
            f"{n.shape}, {f.shape}, {lc.shape}."
        )
    if not np.all(np.isfinite(n) & (n >= 3)) or np.unique(n).size != n.size:
        raise ValueError(f"`num_data` must be distinct sizes >= 3 (log log n must be positive); got {n}.")
    if not np.all(np.isfinite(f) & np.isfinite(lc)):
        raise ValueError("`free_energy` and `reference_loss` must be finite.")
    if free_energy_std is None:
        sigma = np.ones_like(n)
        weighted = False
    else:
        sigma = np.asarray(free_energy_std, dtype=np.float64)
        if sigma.shape != n.shape or not np.all(np.isfinite(sigma) & (sigma >= 0)):
            raise ValueError(f"`free_energy_std` must be finite, >= 0 and of shape {n.shape}; got {sigma}.")
        weighted = bool(np.all(sigma > 0))
        if not weighted:
            sigma = np.ones_like(n)
    ln = np.log(n)
    lln = np.log(ln)
    excess = f - n * lc
    columns = [] if llc is not None else [ln]
    columns += [-lln, np.ones_like(n)]
    if inverse_log_term:
        columns.append(1.0 / ln)
    design = np.stack(columns, axis=1)
    target = excess - (0.0 if llc is None else float(llc) * ln)
    num_params = design.shape[1]
    if n.size < num_params:
        raise ValueError(f"fitting {num_params} coefficients needs at least {num_params} sizes; got {n.size}.")
    sw = 1.0 / sigma
    coef, *_ = np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)
    fitted_part = design @ coef
    residual = target - fitted_part
    chi2 = float(np.sum((residual * sw) ** 2))
    dof = int(n.size - num_params)
    cov = np.linalg.pinv((design * sw[:, None]).T @ (design * sw[:, None]))
    if not weighted:
        cov = cov * (chi2 / dof if dof > 0 else np.nan)
    elif dof > 0 and chi2 / dof > 1:
        cov = cov * (chi2 / dof)
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    i = 0
    if llc is None:
        lam, lam_std = float(coef[0]), float(std[0])
        i = 1
    else:
        lam, lam_std = float(llc), 0.0
    m, m_std = 1.0 + float(coef[i]), float(std[i])
    c, c_std = float(coef[i + 1]), float(std[i + 1])
    d = float(coef[i + 2]) if inverse_log_term else float("nan")
    span = float(lln.max() - lln.min())
    problems = []
    if not np.isfinite(m_std) or m_std > MULTIPLICITY_STD_MAX:
        problems.append(
            f"the standard error of m is {m_std:.2g} (> {MULTIPLICITY_STD_MAX}): the free energies are too noisy, "
            "or too few, to separate -(m-1) log log n from λ log n and the constant"
        )
    if span < LOGLOG_RANGE_MIN:
        problems.append(
            f"log log n spans only {span:.2g} (n = {int(n.min())} … {int(n.max())}; needs ≥ {LOGLOG_RANGE_MIN}): "
            "over so short a range log log n is indistinguishable from a linear function of log n"
        )
    resolved = not problems
    if resolved:
        message = (
            f"m = {m:.2g} ± {m_std:.1g}. Caveat: terms left out of the expansion (O(1/log n) when m > 1) bias m "
            "towards 1 at practical n; read it as 'about 1' or 'clearly above 1'."
        )
    else:
        message = (
            "the data cannot resolve the multiplicity m: "
            + "; ".join(problems)
            + (". Fix λ with llc=... if it is known, widen the range of n, or reduce the Monte-Carlo error.")
        )
        if warn:
            warnings.warn(message, UserWarning, stacklevel=2)
    fitted = fitted_part + (0.0 if llc is None else float(llc) * ln)
    return MultiplicityResult(
        llc=lam,
        llc_std=lam_std,
        multiplicity=m,
        multiplicity_std=m_std,
        constant=c,
        constant_std=c_std,
        inverse_log_coefficient=d,
        resolved=resolved,
        message=message,
        num_data=n.astype(np.int64),
        free_energy=f,
        reference_loss=lc,
        excess=excess,
        excess_std=np.asarray(free_energy_std, dtype=np.float64) if free_energy_std is not None else np.zeros_like(n),
        fitted=fitted,
        chi2=chi2,
        dof=dof,
        covariance=cov,
        llc_fixed=llc is not None,
    )


def fit_multiplicity(
    model_or_loss,
    *args,
    key,
    localization,
    step_size,
    subsample_sizes,
    reference: str = "posterior",
    llc: float | None = None,
    inverse_log_term: bool = False,
    num_temperatures: int = 12,
    tail_tolerance: float = 0.01,
    scale_step_size: bool = True,
    num_prior_samples: int = 256,
    num_chains: int = 4,
    num_draws: int = 2000,
    num_burnin: int = 1000,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
) -> MultiplicityResult:
    r"""Learning coefficient and multiplicity from local free energies on nested subsamples of the data.

    For each size :math:`n_j` in ``subsample_sizes`` the first :math:`n_j` examples of one random
    permutation of the data (nested subsamples, so the free energies share their data and differ smoothly)
    get :func:`local_free_energy` at β = 1 (nβ = :math:`n_j`), with independent keys; then
    :func:`fit_free_energy_expansion` fits :math:`F_n - n\bar L_n = \lambda\log n - (m-1)\log\log n + c`.
    Each size compiles its own sampler (the data shape differs).

    **Which reference** :math:`\bar L_n`. ``reference="center"`` is Watanabe's form with w* in place of the
    true parameter, :math:`\bar L_n = L_n(w^*)`. Its :math:`O_p(1)` term is random and differs between
    sizes: w* is the same point for every subsample, not the subsample's minimizer :math:`\hat w_n`, and for a
    regular model the term contains :math:`-\frac n2 (\hat w_n - w^*)^\top H (\hat w_n - w^*)`, about
    :math:`-\frac12\chi^2_d` at :math:`n \ll` the full size. On linear regression (d = 4, n_j = 125 … 1000)
    that scatter (several nats) swamps :math:`\lambda\log n` and the fit returns nonsense. The default,
    ``reference="posterior"``, uses :math:`\bar L_n = \mathbb E_{\beta=1}[L_n]` from the same run, so the
    regressand is :math:`F_n - n\mathbb E_1[L_n] = \mathrm{KL}(p_1\,\|\,\varphi_\gamma)`
    (``kl_divergence``): it does not involve w* at all, and for a regular model the random term cancels
    exactly (:math:`\mathrm{KL} = \frac12\log\det(I + nH/\gamma) - \frac d2 + O(\gamma/n)`); its
    expansion has the same :math:`\lambda\log n - (m-1)\log\log n` (the O(1) term absorbs
    :math:`-\lambda`; for singular models :math:`\mathbb E_1[nL_n] - nL_n(w_0)` is :math:`O_p(1)`, so the
    expansion holds, with a random constant that we have not characterized).

    ``step_size`` is the step for the largest size; with ``scale_step_size`` every run scales it by the
    curvature rule of :func:`local_free_energy` from that reference, so smaller subsamples (flatter
    posteriors) get proportionally larger steps and mix as fast.

    The χ²/dof scaling of the covariance lets the error bars reflect scatter beyond Monte Carlo when there
    are spare degrees of freedom (at least 4 sizes for 3 coefficients).

    Args:
        subsample_sizes: sizes (distinct, 3 ≤ n_j ≤ n); the step size and ``batch_size`` (clipped to n_j)
            are shared; ``step_size`` should suit the largest size (the stiffest posterior).
        reference: ``"posterior"`` (default) or ``"center"``, see above.
        llc, inverse_log_term: see :func:`fit_free_energy_expansion`.
        everything else: as :func:`local_free_energy`.

    Returns:
        :class:`MultiplicityResult` with the per-size :class:`LocalFreeEnergyResult` in ``results``.
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    if reference not in ("posterior", "center"):
        raise ValueError(f"`reference` must be 'posterior' or 'center'; got {reference!r}.")
    sizes = np.asarray(subsample_sizes)
    if sizes.ndim != 1 or sizes.size < 2 or not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"`subsample_sizes` must be a 1-D sequence of integers; got {subsample_sizes!r}.")
    sizes = np.sort(sizes)
    if sizes[0] < 3 or sizes[-1] > target.num_data or np.unique(sizes).size != sizes.size:
        raise ValueError(
            f"`subsample_sizes` must be distinct integers in [3, n = {target.num_data}]; got {list(subsample_sizes)}."
        )
    needed = (2 if llc is not None else 3) + int(bool(inverse_log_term))
    if sizes.size < needed:
        raise ValueError(f"`subsample_sizes` needs at least {needed} sizes for this fit; got {sizes.size}.")
    perm_key, run_key = jax.random.split(key)
    perm = jax.random.permutation(perm_key, target.num_data)
    results = []
    for j, size in enumerate(sizes):
        sub = dataclasses.replace(target, data=_take(target.data, perm[: int(size)]), num_data=int(size))
        results.append(
            _free_energy_of_target(
                sub,
                key=jax.random.fold_in(run_key, j),
                localization=localization,
                step_size=step_size,
                nbeta=None,
                num_temperatures=num_temperatures,
                min_nbeta=None,
                tail_tolerance=tail_tolerance,
                scale_step_size=scale_step_size,
                num_prior_samples=num_prior_samples,
                num_chains=num_chains,
                num_draws=num_draws,
                num_burnin=num_burnin,
                batch_size=None if batch_size is None else min(int(batch_size), int(size)),
                sampler=sampler,
                sampler_params=sampler_params,
                progress=progress,
                chunk_size=chunk_size,
                step_reference_nbeta=float(sizes[-1]),
            )
        )
    if reference == "posterior":
        reference_loss = [r.mean_nloss[-1] / r.num_data for r in results]  # E_1[L_n]: the top temperature is n
        stds = [r.kl_divergence_std for r in results]
    else:
        reference_loss = [r.init_loss for r in results]
        stds = [r.free_energy_std for r in results]
    fit = fit_free_energy_expansion(
        sizes,
        [r.free_energy for r in results],
        reference_loss,
        stds,
        llc=llc,
        inverse_log_term=inverse_log_term,
    )
    fit.reference = reference
    fit.results = results
    fit.subsample_indices = np.asarray(perm)
    return fit
