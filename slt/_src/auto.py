r"""``step_size="auto"``: calibrate, warm up, recalibrate, then size the run, within ``time_budget``.

A chain started at w* spreads along the directions the loss leaves (nearly) flat at rate :math:`\varepsilon\gamma`
per step, so at a step ε small enough for a bias of a few percent it needs ~1/(εγ) steps to explore, and a
calibration from w* reads low. The warm-up relaxes those directions at a larger step :math:`\varepsilon_w`
(their bias :math:`\propto \varepsilon c_i` is small where the curvature :math:`c_i` is), for
:data:`WARMUP_EFOLDS`/:math:`(\varepsilon_w\gamma)` steps; a second calibration from the warm chains then
chooses ε, and the run's burn-in and draws follow from the mixing measured in the chosen cell: with τ the
integrated autocorrelation time of λ̂ and s its per-draw standard deviation, burn-in
:math:`\max(\text{calibration burn-in}, 20\tau)` and enough draws for an MCSE of ``precision`` × |λ̂|. The
calibrations are :func:`slt.calibrate`'s rule (:mod:`slt.calibration`).

Cost. The calibration grids (:data:`AUTO_CELLS` cells of :data:`AUTO_CELL_STEPS` steps), the warm-up and the
run all run in chunks of :data:`slt._src.driver.DEADLINE_CHUNK_STEPS` steps; on CPU the grids' cells run one
after another (:func:`slt._src.driver.default_cell_batch_size`), so all four share one compiled program, the
run's (elsewhere the grids share a second one). ``time_budget``
bounds the whole call: each calibration grid takes at most :data:`GRID_BUDGET_SHARE` of it (no chunk of
:data:`slt._src.driver.DEADLINE_CHUNK_STEPS` steps starts past that; a grid stopped short splits the steps it
ran into burn-in and draws as it would have split the whole), the warm-up at most a third of what is left after
the first grid, and the run what is left after the second, at the per-step time measured on the warm-up. Beyond
the budget run only the chunk in flight at each deadline (the first includes compilation) and the floors: a
warm-up of 2,000 steps, a burn-in as long as the calibration's and 2,000 draws.

The choice is an :class:`AutoChoice`: trajectories and trackers make it once, at a reference point, and apply it
unchanged at every record (:func:`apply_choice`), so compared estimates share ε, γ and nβ.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import numpy as np

from slt import diagnostics
from slt._src import validate
from slt._src.driver import DEADLINE_CHUNK_STEPS, LOSS_OBSERVABLES, sample
from slt._src.localization import choose_localization
from slt._src.settings import SamplingSettings
from slt.calibration import BIAS_TOLERANCE, _calibrate_target
from slt.targets import check_loss_at_center

__all__ = [
    "AUTO_CELLS",
    "AUTO_CELL_STEPS",
    "WARMUP_BIAS",
    "WARMUP_EFOLDS",
    "WARMUP_FACTOR",
    "AutoChoice",
    "auto_settings",
    "plan_extension",
    "prepare_run",
    "warm_up",
]


# Warm-up of ``step_size="auto"``: the largest first-grid cell at most WARMUP_FACTOR times the chosen ε whose
# predicted bias is at most WARMUP_BIAS, run for WARMUP_EFOLDS/(ε_w γ) steps (at most a third of the time left).
# Three e-folds of the γ-limited directions (5% of their initial excess left): after one, the grokking MLP's λ̂
# still moved by ~0.15% over a record's kept draws (from w* at ε it reads 201 over the first 5,000 steps and settles
# at 186 only after ~2/(εγ)), which the 0.07 MCSE of a run sized for R-hat flags as drift (benchmarks/RESULTS.md).
WARMUP_FACTOR = 16
WARMUP_BIAS = 0.5
WARMUP_EFOLDS = 3
AUTO_CELLS = 8  # cells of each calibration grid (halving), the same for both: one program where cells run together
# (burn-in, kept draws) per cell of the first grid (from w*: it only has to place the warm-up step and bound ε) and
# of the second (from the warm chains: it chooses ε). The run length is traced: one compiled program for both.
AUTO_CELL_STEPS = ((500, 500), (1000, 1000))
# Each grid may take at most GRID_BUDGET_SHARE of time_budget: it runs in chunks of DEADLINE_CHUNK_STEPS steps (the
# same for both: one program) and no chunk starts past its deadline; a grid stopped short splits what ran as it
# would have split the whole (burn-in and draws in the same proportion).
GRID_BUDGET_SHARE = 0.25
MIN_DRAWS = 2000
WITH_ACCEPTANCE = False
GRID_RETRIES = 2  # when the first grid has no stable cell, continue it downwards (8 more halvings) at most this often
# A run sized by "auto" that fails a check more sampling can fix is continued from its final state: at most
# EXTENSIONS times, each by as many draws as its measured mixing asks, within what the time budget has left;
# EXTENSION_GROWTH times its kept draws where the mixing cannot be measured (an undefined ESS). "MCSE too large"
# means larger than EXTEND_PRECISION × precision × |λ̂| (the run was sized for precision from a short cell's noisy
# mixing estimate). A fixed cap of 4× per continuation stopped the grokking run at bias_tolerance 0.03: its slow
# records (autocorrelation time ~750 draws) needed ~150,000 draws per chain, two continuations reached 32,000.
EXTENSIONS = 2
EXTENSION_GROWTH = 4
EXTEND_PRECISION = 1.5
EXTENSION_KEY = 0xE7E0  # continuation k draws from fold_in(key, EXTENSION_KEY + k): a stream no other stage uses


@dataclasses.dataclass
class AutoChoice:
    """What ``step_size="auto"`` chose at one point w*, with what it cost.

    Attributes:
        step_size: ε of the run; ``nbeta``, ``localization``: nβ and γ it was chosen for.
        num_burnin, num_draws: the run's length (burn-in at ε after the warm-up).
        warmup_step_size, num_warmup: the warm-up's ε_w and length (``num_warmup = 0``: no warm-up).
        calibration: the :class:`slt.calibration.CalibrationResult` that chose ε (``.first``: the one from w*).
        init_position: the chains' positions where the run starts (the chosen cell's final positions), or None.
        example_losses_at_center: per-example losses at w*.
        steps_per_chunk: the chunk length of the warm-up and the run (one compiled chunk for both).
        calibration_seconds, warmup_seconds: wall time of the calibrations (curvature included) and the warm-up.
        note: what limited the choice (the time budget), in words; empty when nothing did.
        localization_choice: with ``localization="auto"``, the :class:`slt._src.localization.LocalizationChoice`.
    """

    step_size: float
    nbeta: float
    localization: float
    num_burnin: int
    num_draws: int
    warmup_step_size: float
    num_warmup: int
    calibration: Any
    init_position: Any
    example_losses_at_center: Any
    steps_per_chunk: int
    calibration_seconds: float
    warmup_seconds: float
    note: str = ""
    localization_choice: Any = None

    def describe(self) -> str:
        warm = (
            f", after a warm-up of {self.num_warmup} steps at ε_w = {self.warmup_step_size:.3g}"
            if self.num_warmup
            else ""
        )
        return (
            f"step_size='auto': ε = {self.step_size:.3g}{warm}; burn-in {self.num_burnin}, draws {self.num_draws}; "
            f"calibration {self.calibration_seconds:.1f} s, warm-up {self.warmup_seconds:.1f} s"
            + (f"; localization='auto': γ = {self.localization:.4g}" if self.localization_choice is not None else "")
            + (f". {self.note}" if self.note else "")
        )


def auto_settings(
    target,
    key,
    *,
    num_chains,
    num_draws,
    num_burnin,
    precision,
    time_budget,
    progress,
    steps_per_chunk=None,
    bias_tolerance=BIAS_TOLERANCE,
    **kwargs,
) -> AutoChoice:
    """Calibrate at w*, warm up at a larger step, recalibrate from the warm chains, then size burn-in and draws
    from the mixing measured in the chosen cell (see :func:`slt.estimate_llc`), all within ``time_budget``."""
    start = time.perf_counter()
    precision = validate.positive_float(precision, "precision")
    time_budget = validate.positive_float(time_budget, "time_budget")
    first_key, warm_key, second_key = jax.random.split(key, 3)
    per_example = kwargs.pop("example_losses_at_center", None)
    if per_example is None:  # one data pass for all stages
        per_example = check_loss_at_center(target, kwargs.get("chunk_size", 1024))
    kwargs = {**kwargs, "example_losses_at_center": per_example}
    localization_choice = None
    if "localization" in kwargs:
        others = {k: v for k, v in kwargs.items() if k != "localization"}
        kwargs["localization"], localization_choice = resolve_localization(
            target,
            jax.random.fold_in(key, 1),
            kwargs["localization"],
            progress=progress,
            max_seconds=LADDER_BUDGET_SHARE * time_budget,
            num_chains=num_chains,
            **others,
        )
    bias_tolerance = validate.positive_float(bias_tolerance, "bias_tolerance")
    grid = dict(
        num_step_sizes=AUTO_CELLS,
        num_chains=num_chains,
        with_acceptance=WITH_ACCEPTANCE,
        bias_tolerance=bias_tolerance,
        steps_per_chunk=DEADLINE_CHUNK_STEPS,
    )
    notes = []
    (first_burnin, first_draws), (second_burnin, second_draws) = AUTO_CELL_STEPS
    first = None
    for attempt in range(1 + GRID_RETRIES):
        # No stable cell: the curvature at w* understated the stiffness the chains meet (e.g. K = w1⁴ w2⁴ has zero
        # curvature at 0): continue the grid downwards, same shape, same compiled program.
        below = None if first is None else first.step_sizes.min() * 0.5 ** np.arange(1, AUTO_CELLS + 1)
        first = _calibrate_target(
            target,
            key=first_key,
            progress=progress,
            num_burnin=first_burnin,
            num_draws=first_draws,
            step_sizes=below,
            hessian_top=None if below is None else first.hessian_top,
            allow_failure=attempt < GRID_RETRIES,
            deadline=time.perf_counter() + GRID_BUDGET_SHARE * time_budget,
            **grid,
            **kwargs,
        )
        if first.chosen >= 0:
            break
        notes.append(f"no stable cell at or below {first.step_sizes.max():.3g}: the grid went on below it")
    grid_seconds = first.wall_time
    per_step = first.per_step_seconds / first.gradients_per_step  # the runs below record no acceptance
    left = time_budget - (time.perf_counter() - start)
    max_steps = max(MIN_DRAWS, int(left / max(per_step, 1e-9)))
    if steps_per_chunk is None:  # the grids' chunk: on CPU the grids, warm-up and run share one program
        steps_per_chunk = DEADLINE_CHUNK_STEPS
    cal, warm, warm_seconds = first, None, 0.0
    if left > grid_seconds:
        t0 = time.perf_counter()
        warm = warm_up(
            target,
            first,
            warm_key,
            max_steps=max(MIN_DRAWS, int((left - grid_seconds) / 3 / max(per_step, 1e-9))),
            num_chains=num_chains,
            progress=progress,
            steps_per_chunk=steps_per_chunk,
            **kwargs,
        )
        warm_seconds = time.perf_counter() - t0
    else:
        notes.append(f"no warm-up: the first calibration took {grid_seconds:.1f} s of time_budget={time_budget:g}")
    if warm is not None:
        warm_eps, num_warmup, position, run_per_step = warm
        cal = _calibrate_target(
            target,
            key=second_key,
            step_sizes=warm_eps * 0.5 ** np.arange(AUTO_CELLS),
            progress=progress,
            init_position=position,
            # Exploring only adds curvature the cells at w* did not see (singular valleys), so the warm grid
            # may lower a step the first grid chose by its rule, not raise it (also a guard against a noisy
            # fit on short cells).
            max_step_size=first_grid_bound(first),
            # A first grid whose own fit put its bottom cell above WARMUP_BIAS (a line through cells up to 128x
            # larger) bounds ε too tightly to trust (a grokking MLP: 0.035 where the warm grid's fit allows 0.3 at
            # 5%, and records at 0.02 failed R-hat): its bound then only stands where the warm grid says nothing.
            soft_bound=bool(bottom_unresolved(first) and first.predicted_bias[first.chosen] > WARMUP_BIAS),
            hessian_top=first.hessian_top,
            num_burnin=second_burnin,
            num_draws=second_draws,
            deadline=time.perf_counter() + GRID_BUDGET_SHARE * time_budget,
            **grid,
            **kwargs,
        )
        cal.first, cal.warmup_step_size, cal.num_warmup = first, warm_eps, num_warmup
        per_step = run_per_step
    else:
        warm_eps, num_warmup = float("nan"), 0
    calibration_seconds = time.perf_counter() - start - warm_seconds
    left = time_budget - (time.perf_counter() - start)
    max_steps = max(MIN_DRAWS, int(left / max(per_step, 1e-9)))
    g = cal.chosen
    ess = cal.ess[g] if np.isfinite(cal.ess[g]) and cal.ess[g] > 0 else 1.0
    tau = max(1.0, cal.num_chains * cal.num_draws / ess)  # steps per effective draw
    if num_burnin is None:
        burnin = math.ceil(max(cal.num_burnin, 20 * tau))  # the mixing
        why = "the mixing (20 τ)"
        gamma = cal.localization
        relax = math.ceil(2.0 / (cal.step_size * gamma)) if num_warmup == 0 and gamma > 0 else 0
        if relax > burnin:  # nothing relaxed the flat directions yet: they need ~2/(εγ) steps
            burnin, why = relax, "the flat directions, with no warm-up (2/(εγ))"
        num_burnin = int(min(burnin, max(max_steps // 3, cal.num_burnin)))
        if num_burnin < 0.9 * burnin:  # a shortfall worth a note
            notes.append(
                f"time_budget={time_budget:g} s allowed a burn-in of {num_burnin} of the {burnin} steps {why} needs; "
                "the traces may drift: raise time_budget"
            )
    if num_draws is None:
        sd = cal.draw_std[g]
        # the ESS at which R-hat passes too (diagnostics.ess_target), or the MCSE the precision asks for
        by_precision = (sd / max(precision * abs(cal.llc_mean[g]), 1e-12)) ** 2
        need = max(diagnostics.ess_target(num_chains), by_precision) * tau / num_chains
        num_draws = int(np.clip(math.ceil(need), MIN_DRAWS, max(MIN_DRAWS, max_steps - num_burnin)))
        if num_draws < need:
            notes.append(
                f"time_budget={time_budget:g} s allowed {num_draws} draws of the {math.ceil(need)} that an MCSE of "
                f"precision={precision:g} × λ̂ needs"
            )
    return AutoChoice(
        step_size=cal.step_size,
        nbeta=cal.nbeta,
        localization=cal.localization,
        num_burnin=int(num_burnin),
        num_draws=int(num_draws),
        warmup_step_size=warm_eps,
        num_warmup=int(num_warmup),
        calibration=cal,
        init_position=cal.chosen_position,
        example_losses_at_center=per_example,
        steps_per_chunk=int(steps_per_chunk),
        calibration_seconds=calibration_seconds,
        warmup_seconds=warm_seconds,
        note="; ".join(notes),
        localization_choice=localization_choice,
    )


@dataclasses.dataclass(frozen=True)
class Extension:
    """How to continue a run: ``draws`` more records, of which the first ``drop`` kept records of the run so far
    join the burn-in (a drifting trace: all of them; chains that disagree: the first half), and why."""

    draws: int
    drop: int
    reason: str


def plan_extension(result, *, precision: float, max_draws: int, drop_allowed: bool = True) -> Extension | None:
    r"""What more sampling would fix in ``result`` (an :class:`slt.LLCResult` sized by ``step_size="auto"``), or
    None when nothing would: no chain diverged and the trace fails a check that longer chains pass.

    * the λ̂ trace still drifts (:func:`slt.diagnostics.drift_z` beyond ``DRIFT_Z``): the kept draws were burn-in;
      they join it and as many draws again are run;
    * R-hat > 1.01 without drift, or bulk ESS < ``ESS_MIN``: the chains are too short for their mixing (for
      stationary chains R-hat − 1 ≈ num_chains/ESS); the kept draws N grow until the ESS reaches
      :func:`slt.diagnostics.ess_target` and R-hat − 1 would halve (R-hat − 1 ∝ 1/N), and with R-hat the first
      half of the kept draws joins the burn-in;
    * MCSE > ``EXTEND_PRECISION``·precision·|λ̂|: since MCSE ∝ N^{-1/2}, N grows by (MCSE/(precision·|λ̂|))².

    An extension adds what the measurement asks, at most ``max_draws`` (what the time budget affords), and
    ``EXTENSION_GROWTH``·N draws where the ESS is undefined; a fix smaller than N/10 draws is not worth a
    continuation. ``drop_allowed=False`` (a burn-in the user set) only adds draws.

    Example:
        >>> import numpy as np, types
        >>> rng = np.random.default_rng(0)
        >>> drifting = np.cumsum(rng.normal(size=(4, 1000)), axis=1) * 0.1 + np.linspace(0, 30, 1000)
        >>> res = types.SimpleNamespace(diverged=np.zeros(4, bool), llc_trace=drifting, llc_mean=drifting.mean(),
        ...                             llc_mcse=0.1, rhat=1.0, ess=1000.0, num_draws=1000)
        >>> plan_extension(res, precision=0.02, max_draws=10_000)
        Extension(draws=1000, drop=1000, reason='the λ̂ trace still drifts (z = 8.6)')
        >>> short = rng.normal(size=(4, 2000))  # stationary, but 200 effective draws: R-hat 1.017 is no surprise
        >>> res = types.SimpleNamespace(diverged=np.zeros(4, bool), llc_trace=short, llc_mean=10.0,
        ...                             llc_mcse=0.01, rhat=1.017, ess=200.0, num_draws=2000)
        >>> plan_extension(res, precision=0.02, max_draws=10_000)  # to 800 effective draws: 8,000 kept
        Extension(draws=7000, drop=1000, reason='R-hat 1.017 > 1.01 (bulk ESS 200)')
        >>> res.rhat, res.ess = 1.1, 20.0  # slower: 40 times the draws, as far as the budget affords
        >>> plan_extension(res, precision=0.02, max_draws=50_000)
        Extension(draws=50000, drop=1000, reason='R-hat 1.100 > 1.01 (bulk ESS 20)')
    """
    diverged = np.asarray(result.diverged, bool)
    if diverged.any() or not np.isfinite(result.llc_mean):
        return None  # a divergence is a step-size problem, reported as one
    kept = int(result.num_draws)
    z = diagnostics.drift_z(np.asarray(result.llc_trace)[~diverged])
    rhat, ess = float(result.rhat), float(result.ess)
    if np.isfinite(z) and abs(z) > diagnostics.DRIFT_Z:
        draws, drop, reason = kept, kept if drop_allowed else 0, f"the λ̂ trace still drifts (z = {z:.1f})"
    else:
        bad_rhat = np.isfinite(rhat) and rhat > diagnostics.RHAT_MAX
        short_ess = np.isfinite(ess) and ess < diagnostics.ESS_MIN
        target = precision * abs(float(result.llc_mean))
        ratio = (float(result.llc_mcse) / target) ** 2 if target > 0 and np.isfinite(result.llc_mcse) else 0.0
        if not bad_rhat and not short_ess and ratio <= EXTEND_PRECISION**2:
            return None
        growth = ratio
        if bad_rhat or short_ess:
            factor = diagnostics.draws_factor(rhat, min(ess, _ess_from_mcse(result, diverged)), diverged.size)
            growth = max(growth, factor if np.isfinite(factor) else EXTENSION_GROWTH)
        drop = kept // 2 if bad_rhat and drop_allowed else 0
        draws = math.ceil(kept * growth) - (kept - drop)  # the kept draws after: N·growth
        if bad_rhat:
            reason = f"R-hat {rhat:.3f} > {diagnostics.RHAT_MAX} (bulk ESS {ess:.0f})"
        elif short_ess:
            reason = f"bulk ESS {ess:.0f} < {diagnostics.ESS_MIN}"
        else:
            reason = (
                f"MCSE {float(result.llc_mcse):.3g} > {EXTEND_PRECISION:g} × precision × |λ̂| "
                f"= {EXTEND_PRECISION * target:.3g}"
            )
    draws = int(min(draws, max_draws))
    if draws < max(1, kept // 10):
        return None
    return Extension(draws=draws, drop=drop, reason=reason)


def _ess_from_mcse(result, diverged) -> float:
    """The effective draws the run's MCSE implies, var(λ̂ draws)/MCSE² (``inf`` where it is undefined)."""
    draws = np.asarray(result.llc_trace)[~diverged]
    mcse = float(result.llc_mcse)
    return float(np.var(draws) / mcse**2) if np.isfinite(mcse) and mcse > 0 and draws.size > 1 else float("inf")


def bottom_unresolved(cal) -> bool:
    """Whether a calibration fell back to its grid's smallest cell with a predicted bias above the tolerance:
    the bias rule did not hold anywhere on the grid, and smaller steps were not tried."""
    if cal.chosen < 0 or cal.by_rule:
        return False
    bias = cal.predicted_bias[cal.chosen]
    return bool(cal.chosen == int(np.argmin(cal.step_sizes)) and np.isfinite(bias) and bias > cal.bias_tolerance)


def first_grid_bound(first) -> float | None:
    r"""The largest ε the first calibration (from w*) allows the second one to choose, or None.

    Its choice where that was by the bias rule. Where no cell of the first grid met the rule (the smallest
    equilibrated cell still had a predicted bias above the tolerance: the grid's bottom was reached), its fit
    :math:`\hat\lambda(\varepsilon) \approx a + b\varepsilon` still bounds the step, at
    :math:`\varepsilon \le \text{tolerance}\cdot a/b`: without that bound the warm grid's own fit decided
    alone, and on the normal crossings its small cells, started from the warm chains and not yet relaxed
    (flat directions relax in ~1/(εγ) steps), read *higher* than its large ones; the fitted slope came out
    negative, "no bias" was read off it, and the largest cell was chosen (+9% to +17% on K = w1² w2⁴ at γ = 1).
    None where the first fit has no positive slope and intercept either.
    """
    if first.by_rule:
        return first.step_size
    a, b = first.intercept, first.slope
    if np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0:
        return float(first.bias_tolerance * a / b)
    return None


def is_auto(value) -> bool:
    """Whether a setting is ``"auto"``; any other string is an error naming what is accepted."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"a setting given as a string must be 'auto'; got {value!r}.")
        return True
    return False


def _ladder_kwargs(kwargs: dict) -> dict:
    names = ("nbeta", "batch_size", "num_chains", "sampler", "sampler_params", "chunk_size", "example_losses_at_center")
    return {k: kwargs[k] for k in names if k in kwargs}


# localization="auto" inside a time_budget: the ladder may take at most this share of it
LADDER_BUDGET_SHARE = 0.5


def resolve_localization(target, key, localization, *, progress=False, max_seconds=None, **kwargs):
    """``(γ, LocalizationChoice or None)``: ``localization="auto"`` chooses γ (:mod:`slt._src.localization`, within
    ``max_seconds``); any other value is returned as it is. The one path for every estimator that takes γ."""
    if not is_auto(localization):
        return localization, None
    choice = choose_localization(target, key, progress=progress, max_seconds=max_seconds, **_ladder_kwargs(kwargs))
    return choice.localization, choice


def warm_up(target, first, key, *, max_steps, num_chains, progress, steps_per_chunk=None, **kwargs):
    r"""Relax the slow directions before the step size is chosen for good.

    A chain started at w* spreads along the directions the loss leaves (nearly) flat at rate
    :math:`\varepsilon\gamma` per step, so at the small ε that a bias tolerance of a few percent demands it
    needs ~1/(εγ) steps (10⁵-10⁶ for DLNs at γ = 1) and λ̂ creeps up all the while: the calibration cells
    and a short run both read low. Those directions do not care much about ε (the bias of direction i is
    ∝ ε c_i, small where the curvature c_i is small), so they are relaxed at a step ε_w up to
    ``WARMUP_FACTOR`` times larger, for ``WARMUP_EFOLDS``/(ε_w γ) steps; the stiff directions, biased at ε_w,
    re-equilibrate within ~2/(ε c_i) steps once the step is lowered (the second calibration's burn-in). Returns
    ``(ε_w, steps, final positions, seconds per step excluding compilation)``, or None when there is nothing to
    gain (the chosen ε is already the largest admissible one), the kernel has no ``position``, or the warm-up
    diverged at ε_w and at ε_w/4.
    """
    eps = first.step_sizes
    admissible = first.stable & (eps <= WARMUP_FACTOR * first.step_size) & ~(first.predicted_bias > WARMUP_BIAS)
    if bottom_unresolved(first):
        # The grid met the bias rule nowhere down to its bottom, so its choice (the bottom cell) stands unchecked
        # unless a second grid runs: warm up there, the least biased step the grid has, whatever its predicted
        # bias (a grokking MLP at γ = 2.4e-4: bottom cell 0.651, predicted +94% by a line through cells up to
        # 128x larger, measured +12%; without the warm-up and the bounded second grid it was the run's step).
        admissible[first.chosen] = True
    if first.chosen_position is None or not admissible.any():
        return None
    if eps[admissible].max() <= first.step_size and not bottom_unresolved(first):
        return None  # nothing to gain; but a grid that met no bias rule down to its bottom warms up at its choice
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
        steps = warmup_steps(warm_eps, settings.localization, max_steps)
        run = run_warmup(
            target,
            settings,
            jax.random.fold_in(key, attempt),
            warm_eps,
            steps,
            per_example,
            steps_per_chunk=steps_per_chunk,
            progress=progress,
        )
        position = getattr(run.final_state, "position", None)
        finite = np.isfinite(run.loss).all() and all(
            bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree_util.tree_leaves(position)
        )
        if position is not None and finite:
            per_step = max(run.wall_time - run.compile_time, 1e-9) / steps
            return warm_eps, steps, position, per_step
        warm_eps /= 4
        if warm_eps <= first.step_size:
            return None
    return None


def warmup_steps(warm_eps: float, localization: float, max_steps: int) -> int:
    """``WARMUP_EFOLDS``/(ε_w γ) steps, clipped to [2,000, max_steps] (max_steps without localization)."""
    if localization <= 0:
        return int(max_steps)
    return int(np.clip(math.ceil(WARMUP_EFOLDS / (warm_eps * localization)), MIN_DRAWS, max(MIN_DRAWS, max_steps)))


def run_warmup(target, settings, key, warm_eps, steps, per_example, *, steps_per_chunk, progress, **driver):
    """The warm-up run: ``settings``' chains at ``warm_eps`` for ``steps`` steps from w*; the driver's Run."""

    return sample(
        target,
        key=key,
        example_losses_at_center=per_example,
        nbeta=settings.nbeta,
        localization=settings.localization,
        num_chains=settings.num_chains,
        num_steps=steps,
        batch_size=settings.batch_size,
        sampler=settings.sampler,
        sampler_params={**settings.all_sampler_params, "step_size": warm_eps},
        observables=LOSS_OBSERVABLES,
        steps_per_chunk=steps_per_chunk,
        progress=progress,
        description="warm-up",
        **driver,
    )


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare_run` resolved: validated settings and where the run starts.

    ``time_budget`` is what is left of the caller's after the γ ladder (for continuations);
    ``draws_sized_by_auto`` / ``burnin_sized_by_auto``: whether ``"auto"`` chose them (the user left them None)."""

    settings: SamplingSettings
    per_example: Any
    init_position: Any
    steps_per_chunk: int | None
    choice: AutoChoice | None
    localization_choice: Any
    key: Any
    time_budget: float
    draws_sized_by_auto: bool
    burnin_sized_by_auto: bool


def prepare_run(
    target,
    key,
    *,
    step_size,
    localization,
    nbeta,
    num_chains,
    num_draws,
    num_burnin,
    batch_size,
    sampler,
    sampler_params,
    chunk_size,
    precision,
    time_budget,
    progress,
    steps_per_chunk,
    bias_tolerance=BIAS_TOLERANCE,
    **settings,
) -> Prepared:
    """The one setup of every single-temperature estimator (:func:`slt.estimate_llc`, :func:`slt.bif`,
    :func:`slt.susceptibilities`): ``localization="auto"`` (the ladder, within ``LADDER_BUDGET_SHARE`` of
    ``time_budget``), then ``step_size="auto"`` (:func:`auto_settings`, within the rest), then the validated
    :class:`SamplingSettings` (``settings``: more of its fields, e.g. ``estimator``); unset draws and burn-in
    default to 2000 and 1000 for a fixed step."""
    per_example = choice = localization_choice = init_position = None
    if is_auto(localization):
        key, loc_key = jax.random.split(key)
        per_example = check_loss_at_center(target, chunk_size)
        localization, localization_choice = resolve_localization(
            target,
            loc_key,
            localization,
            nbeta=nbeta,
            batch_size=batch_size,
            num_chains=num_chains,
            sampler=sampler,
            sampler_params=sampler_params,
            chunk_size=chunk_size,
            example_losses_at_center=per_example,
            progress=progress,
            max_seconds=LADDER_BUDGET_SHARE * time_budget,
        )
        time_budget = max(time_budget - localization_choice.wall_time, 1e-3)  # the budget covers the whole call
    draws_sized_by_auto, burnin_sized_by_auto = num_draws is None, num_burnin is None
    if isinstance(step_size, str):
        if step_size != "auto":
            raise ValueError(f"`step_size` must be a positive number or 'auto'; got {step_size!r}.")
        key, cal_key = jax.random.split(key)
        choice = auto_settings(
            target,
            cal_key,
            num_chains=num_chains,
            num_draws=num_draws,
            num_burnin=num_burnin,
            batch_size=batch_size,
            nbeta=nbeta,
            localization=localization,
            sampler=sampler,
            sampler_params=sampler_params,
            precision=precision,
            bias_tolerance=bias_tolerance,
            time_budget=time_budget,
            progress=progress,
            chunk_size=chunk_size,
            steps_per_chunk=steps_per_chunk,
            example_losses_at_center=per_example,
        )
        per_example, init_position = choice.example_losses_at_center, choice.init_position
        step_size, num_burnin, num_draws = choice.step_size, choice.num_burnin, choice.num_draws
        steps_per_chunk = choice.steps_per_chunk
    validated = SamplingSettings.validated(
        num_data=target.num_data,
        step_size=step_size,
        num_chains=num_chains,
        num_draws=2000 if num_draws is None else num_draws,
        num_burnin=1000 if num_burnin is None else num_burnin,
        batch_size=batch_size,
        nbeta=nbeta,
        localization=localization,
        sampler=sampler,
        sampler_params=sampler_params,
        chunk_size=chunk_size,
        num_params=target.num_parameters,
        **settings,
    )
    if per_example is None:
        per_example = check_loss_at_center(target, validated.chunk_size)
    return Prepared(
        validated,
        per_example,
        init_position,
        steps_per_chunk,
        choice,
        localization_choice,
        key,
        time_budget,
        draws_sized_by_auto,
        burnin_sized_by_auto,
    )
