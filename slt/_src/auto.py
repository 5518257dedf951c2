r"""``step_size="auto"`` of :func:`slt.estimate_llc`: calibrate, warm up, recalibrate, then size the run.

A chain started at w* spreads along the directions the loss leaves (nearly) flat at rate :math:`\varepsilon\gamma`
per step, so at a step ε small enough for a bias of a few percent it needs ~1/(εγ) steps to explore, and a
calibration from w* reads low. The warm-up relaxes those directions at a larger step :math:`\varepsilon_w`
(their bias :math:`\propto \varepsilon c_i` is small where the curvature :math:`c_i` is), for
:math:`1/(\varepsilon_w\gamma)` steps; a second calibration from the warm chains then chooses ε, and the run's
burn-in and draws follow from the mixing measured in the chosen cell: with τ the integrated autocorrelation
time of λ̂ and s its per-draw standard deviation, burn-in :math:`\max(\text{calibration burn-in}, 20\tau)` and
enough draws for an MCSE of ``precision`` × |λ̂|, within ``time_budget``. The calibrations are
:func:`slt.calibrate`'s rule (:mod:`slt.calibration`).
"""

from __future__ import annotations

import jax
import numpy as np

from slt import diagnostics
from slt._src import validate
from slt._src.driver import run_chains
from slt._src.settings import SamplingSettings
from slt.calibration import _calibrate_target
from slt.targets import check_loss_at_center

__all__ = ["WARMUP_BIAS", "WARMUP_FACTOR", "WARMUP_GRID", "auto_settings", "warm_up"]


# Warm-up of ``step_size="auto"``: the largest first-grid cell at most WARMUP_FACTOR times the chosen ε whose
# predicted bias is at most WARMUP_BIAS, run for 1/(ε_w γ) steps (at most a third of the step budget).
WARMUP_FACTOR = 16
WARMUP_BIAS = 0.5
WARMUP_GRID = 8  # cells of the second calibration, halving from ε_w


def auto_settings(target, key, *, num_chains, num_draws, num_burnin, precision, time_budget, progress, **kwargs):
    """Calibrate at w*, warm up at a larger step, recalibrate from the warm chains, then size burn-in and draws
    from the mixing measured in the chosen cell (see :func:`slt.estimate_llc`). Returns
    ``(calibration, step_size, num_burnin, num_draws, init_position, per-example losses at w*)``."""
    precision = validate.positive_float(precision, "precision")
    time_budget = validate.positive_float(time_budget, "time_budget")
    first_key, warm_key, second_key = jax.random.split(key, 3)
    per_example = check_loss_at_center(target, kwargs.get("chunk_size", 1024))  # one data pass for all stages
    kwargs = {**kwargs, "example_losses_at_center": per_example}
    first = _calibrate_target(target, key=first_key, num_chains=num_chains, progress=progress, **kwargs)
    per_step = first.per_step_seconds / first.gradients_per_step  # the runs below record no acceptance
    max_steps = max(2000, int(time_budget / max(per_step, 1e-9)))
    cal = first
    warm = warm_up(
        target, first, warm_key, max_steps=max_steps // 3, num_chains=num_chains, progress=progress, **kwargs
    )
    if warm is not None:
        warm_eps, num_warmup, position = warm
        cal = _calibrate_target(
            target,
            key=second_key,
            step_sizes=warm_eps * 0.5 ** np.arange(WARMUP_GRID),
            num_chains=num_chains,
            progress=progress,
            init_position=position,
            # Exploring only adds curvature the cells at w* did not see (singular valleys), so the warm grid
            # may lower a step the first grid chose by its rule, not raise it (also a guard against a noisy
            # fit on short cells); a first choice that was a fallback (no plateau seen from w*) is no bound.
            max_step_size=first.step_size if first.by_rule else None,
            **kwargs,
        )
        cal.first, cal.warmup_step_size, cal.num_warmup = first, warm_eps, num_warmup
        max_steps = max(2000, max_steps - num_warmup)
    g = cal.chosen
    kept = cal.num_draws
    ess = cal.ess[g] if np.isfinite(cal.ess[g]) and cal.ess[g] > 0 else 1.0
    tau = max(1.0, cal.num_chains * kept / ess)  # steps per effective draw
    if num_burnin is None:
        num_burnin = int(min(max(cal.num_burnin, 20 * tau), max_steps // 3))
    if num_draws is None:
        sd = cal.draw_std[g]
        need = max(diagnostics.ESS_MIN, (sd / max(precision * abs(cal.llc_mean[g]), 1e-12)) ** 2)
        num_draws = int(np.clip(np.ceil(need * tau / cal.num_chains), 2000, max(2000, max_steps - num_burnin)))
    return cal, cal.step_size, num_burnin, num_draws, cal.chosen_position, per_example


def warm_up(target, first, key, *, max_steps, num_chains, progress, **kwargs):
    r"""Relax the slow directions before the step size is chosen for good.

    A chain started at w* spreads along the directions the loss leaves (nearly) flat at rate
    :math:`\varepsilon\gamma` per step, so at the small ε that a bias tolerance of a few percent demands it
    needs ~1/(εγ) steps (10⁵-10⁶ for DLNs at γ = 1) and λ̂ creeps up all the while: the calibration cells
    and a short run both read low. Those directions do not care much about ε (the bias of direction i is
    ∝ ε c_i, small where the curvature c_i is small), so they are relaxed at a step ε_w up to
    ``WARMUP_FACTOR`` times larger, for 1/(ε_w γ) steps; the stiff directions, biased at ε_w, re-equilibrate
    within ~2/(ε c_i) steps once the step is lowered (the second calibration's burn-in). Returns
    ``(ε_w, steps, final positions)``, or None when there is nothing to gain (the chosen ε is already the
    largest admissible one), the kernel has no ``position``, or the warm-up diverged at ε_w and at ε_w/4.
    """
    eps = first.step_sizes
    admissible = first.stable & (eps <= WARMUP_FACTOR * first.step_size) & ~(first.predicted_bias > WARMUP_BIAS)
    if first.chosen_position is None or not admissible.any() or eps[admissible].max() <= first.step_size:
        return None
    warm_eps = float(eps[admissible].max())
    per_example = kwargs.pop("example_losses_at_center")
    settings = SamplingSettings.validated(
        num_data=target.num_data,
        step_size=warm_eps,
        num_chains=num_chains,
        num_params=target.num_parameters,
        **kwargs,
    )
    for attempt in range(2):
        gamma = settings.localization
        steps = max_steps if gamma <= 0 else int(np.clip(np.ceil(1.0 / (warm_eps * gamma)), 2000, max(2000, max_steps)))
        trace = run_chains(
            target,
            key=jax.random.fold_in(key, attempt),
            example_losses_at_center=per_example,
            nbeta=settings.nbeta,
            localization=gamma,
            num_chains=num_chains,
            num_steps=steps,
            batch_size=settings.batch_size,
            sampler=settings.sampler,
            sampler_params={**settings.all_sampler_params, "step_size": warm_eps},
            progress=progress,
            description="warm-up",
        )
        position = getattr(trace.final_state, "position", None)
        finite = np.isfinite(trace.loss).all() and all(
            bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree_util.tree_leaves(position)
        )
        if position is not None and finite:
            return warm_eps, steps, position
        warm_eps /= 4
        if warm_eps <= first.step_size:
            return None
    return None
