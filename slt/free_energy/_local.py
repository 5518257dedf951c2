r"""The local free energy by thermodynamic integration over the inverse temperature.

Notation: n data points, :math:`L_n` the mean negative log-likelihood, w* the centre,
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
:math:`F_n = \int_0^1 \mathbb E_\beta[nL_n]\,d\beta` (Watanabe 2009), the local Bayes free energy.
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
subset, :func:`slt._src.curvature.hessian_radius`). For a quadratic loss (:math:`h_* = h_0`) this keeps
:math:`\varepsilon_k c(t_k)` equal to its value at T, so every temperature mixes in about as many steps as the
top one, with the same relative discretization bias :math:`\varepsilon c/4`
(:func:`slt.models.regression.quadratic_llc`). When the curvature grows away from w* (singular models:
:math:`h_0 > h_*`), the scale-up is smaller:
:math:`\varepsilon_k c(t_k)` stays at most its top-temperature value wherever the typical curvature of
:math:`L_n` at temperature t is at most :math:`h_0` (and at least :math:`h_*` at T); for a purely singular
point (:math:`h_* = 0`, e.g. :math:`K = w^4`) it is the same step everywhere. Pass an array to choose every
step yourself.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from slt import diagnostics
from slt._src import validate
from slt._src.curvature import hessian_radius
from slt._src.results import Result
from slt._src.validate import as_key
from slt.calibration import BIAS_TOLERANCE
from slt.free_energy._common import (
    _auto_seconds,
    _check_localization,
    _check_num_temperatures,
    _check_step_sizes,
    _problem,
    _sample,
    _take,
)
from slt.samplers.base import normal_like
from slt.targets import Target, make_target

__all__ = ["LocalFreeEnergyResult", "local_free_energy"]


#: Prior draws at which the curvature is measured, power-iteration steps, examples in the Hessian's batch.
_CURVATURE_DRAWS = 8
_CURVATURE_ITERS = 30
_CURVATURE_BATCH = 512
#: The geometric grid spans at most this many decades below the top temperature.
_MAX_DECADES = 12.0


@dataclasses.dataclass
class LocalFreeEnergyResult(Result):
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

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> res = slt.local_free_energy(p.loss_fn, p.params, p.data, key=jax.random.key(0), localization=1.0,
        ...                             step_size=1e-3, num_temperatures=8, num_chains=2, num_draws=1000,
        ...                             num_burnin=100)
        >>> res.nbetas.shape, res.excess_loss_trace.shape, res.nbeta  # default top temperature: nβ = n
        ((8,), (8, 2, 1000), 200.0)
        >>> bool(np.isclose(res.free_energy, res.nbeta * res.init_loss + res.free_energy_excess))
        True
        >>> lam = res.llc_per_temperature  # the integrand in log nβ rises from about 0 to about λ = 1
        >>> bool(lam[0] < 0.1), bool(abs(lam[-1] - 1.0) < 0.3), bool(res.kl_divergence > 0)
        (True, True, True)
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
    calibration: Any = dataclasses.field(default=None, repr=False)

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
    subset of that many examples (spectral radius, :func:`slt._src.curvature.hessian_radius`) at w* (entry 0) and at
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
    precision=0.02,
    bias_tolerance=BIAS_TOLERANCE,
    time_budget=120.0,
) -> LocalFreeEnergyResult:
    """``step_reference_nbeta``: the temperature ``step_size`` is meant for (default the top one); the
    schedule scales from there, so one step suits a series of runs with different top temperatures."""
    gamma = _check_localization(localization, strict=True)
    num_temperatures = _check_num_temperatures(num_temperatures)
    auto = isinstance(step_size, str)
    top_step, explicit_steps = (step_size, None) if auto else _check_step_sizes(step_size, num_temperatures)
    n = target.num_data
    top = float(n) if nbeta is None else validate.positive_float(nbeta, "nbeta")
    tail_tolerance = validate.positive_float(tail_tolerance, "tail_tolerance")
    validate.int_at_least(num_prior_samples, "num_prior_samples", 2)
    if min_nbeta is not None:
        min_nbeta = validate.positive_float(min_nbeta, "min_nbeta")
        if min_nbeta >= top:
            raise ValueError(f"`min_nbeta` ({min_nbeta:g}) must be below the top temperature nβ = {top:g}.")
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
        auto_nbeta=top,
        key=key,
        precision=precision,
        bias_tolerance=bias_tolerance,
        time_budget=time_budget,
        progress=progress,
    )
    s = problem.settings
    top_step = s.step_size
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
        wall_time=run.wall_time + _auto_seconds(problem),
        calibration=None if problem.auto is None else problem.auto.calibration,
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
) -> LocalFreeEnergyResult:
    r"""The local free energy by thermodynamic integration over the inverse temperature.

    .. math::

        F = -\log\int e^{-n\beta L_n(w)}\,\mathcal N(w; w^*, \gamma^{-1}I)\,dw
          = n\beta L_n(w^*) + \int_0^{n\beta}\big(\mathbb E_t[L_n] - L_n(w^*)\big)\,dt

    with a *normalized* Gaussian prior (so F(0) = 0; the identity :math:`dF/dt = \mathbb E_t[L_n]` is
    derived in :mod:`slt.free_energy._local`). :math:`\mathbb E_t[L_n] - L_n(w^*)` is estimated per draw by the
    paired minibatch difference :math:`L_B(w) - L_B(w^*)`; every temperature runs as one more batch axis of
    a single jitted computation (:func:`slt._src.driver.run_grid`), with independent keys per temperature.

    Grid and quadrature (:mod:`slt.free_energy._local`): ``num_temperatures`` nodes equally spaced in log nβ from
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
        step_size: ε at the top temperature (scalar), an array of ``num_temperatures`` steps, or ``"auto"``:
            :func:`slt.estimate_llc`'s choice at the top temperature (scaled to the others as above), which
            also sizes ``num_burnin``/``num_draws`` where they are None (else 1000 and 2000), with
            ``precision``, ``bias_tolerance`` and ``time_budget``.
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

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> x = np.asarray(p.data[0], np.float64)
        >>> h = np.linalg.eigvalsh(x.T @ x / 200)  # the Hessian of L_n, which is quadratic
        >>> exact = 0.5 * np.sum(np.log1p(200 * h / 1.0))  # Gaussian integral at nβ = n = 200, γ = 1
        >>> res = slt.local_free_energy(p.loss_fn, p.params, p.data, key=jax.random.key(0), localization=1.0,
        ...                             step_size=1e-3, num_temperatures=8, num_chains=2, num_draws=1000,
        ...                             num_burnin=100)
        >>> bool(abs(res.free_energy_excess - exact) < 0.15 * exact)
        True
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
        precision=precision,
        bias_tolerance=bias_tolerance,
        time_budget=time_budget,
    )
