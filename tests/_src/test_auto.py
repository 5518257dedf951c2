"""Continuations of runs sized by ``step_size="auto"``: what they plan, and that the plan makes the checks pass."""

from __future__ import annotations

import math
import types

import numpy as np

from slt import diagnostics
from slt._src.auto import plan_extension


def _run(trace):
    return types.SimpleNamespace(
        diverged=np.zeros(trace.shape[0], bool),
        llc_trace=trace,
        llc_mean=10.0 + trace.mean(),
        llc_mcse=diagnostics.mcse(trace),
        rhat=diagnostics.rhat(trace),
        ess=diagnostics.ess(trace),
        num_draws=trace.shape[1],
    )


def test_a_stationary_run_that_fails_rhat_or_ess_is_continued_until_both_pass(ar1):
    """Stationary chains at ~200 effective draws fail R-hat or ESS; one planned continuation (drop included)
    brings almost every one to pass both (the old plan, 1.5× the kept draws, left about half failing)."""
    rng = np.random.default_rng(0)
    phi, chains, draws = 0.95, 4, 2000
    planned, still_failing = 0, 0
    for _ in range(20):
        first = ar1(rng, chains, draws, phi)
        plan = plan_extension(_run(first), precision=1.0, max_draws=10**9)
        if plan is None:
            continue
        planned += 1
        # the continuation: the same stationary process, from where the chains stopped
        more = ar1(rng, chains, plan.draws, phi, start=first[:, -1])
        joined = np.concatenate([first[:, plan.drop :], more], axis=1)
        r, e = diagnostics.rhat(joined), diagnostics.ess(joined)
        still_failing += r > 1.01 or e < diagnostics.ESS_MIN
    assert planned >= 15, planned  # ESS ≈ 205 < ESS_MIN: nearly every run needs more
    assert still_failing <= 3, (still_failing, planned)


def test_a_slowly_mixing_run_grows_as_far_as_its_mixing_asks_within_the_budget(ar1):
    """Chains with an autocorrelation time of ~400 draws (AR(1), φ = 0.995) have ~20 effective draws in 4 × 2,000:
    they need ~40 times their draws. One continuation grows that far (a cap of 4× per continuation, as before,
    left every run failing after two), and never past ``max_draws``, what the time budget affords."""
    rng = np.random.default_rng(1)
    phi, chains, draws = 0.995, 4, 2000
    growths, still_failing = [], 0
    for _ in range(10):
        first = ar1(rng, chains, draws, phi)
        plan = plan_extension(_run(first), precision=1.0, max_draws=10**9)
        assert plan is not None
        growths.append((draws - plan.drop + plan.draws) / draws)
        more = ar1(rng, chains, plan.draws, phi, start=first[:, -1])
        joined = np.concatenate([first[:, plan.drop :], more], axis=1)
        still_failing += diagnostics.rhat(joined) > 1.01 or diagnostics.ess(joined) < diagnostics.ESS_MIN
        capped = plan_extension(_run(first), precision=1.0, max_draws=5000)
        assert capped.draws == 5000
    assert min(growths) > 16, growths  # more than two continuations of 4x could reach
    assert still_failing <= 2, (still_failing, growths)


def test_the_continuation_is_sized_from_the_ess_the_mcse_implies_where_that_is_smaller():
    """A slow mode that ArviZ's truncated autocorrelation sum misses shows in :func:`slt.diagnostics.mcse`; where
    var(λ̂ draws)/MCSE² is below the bulk ESS, the plan sizes from it: here 100 effective draws against a bulk ESS
    of 400 ask 8× the kept draws, not the 2.4× that R-hat 1.012 and ESS 400 ask."""
    trace = np.random.default_rng(2).normal(size=(4, 2000))
    res = _run(trace)
    res.rhat, res.ess = 1.012, 400.0
    res.llc_mcse = float(np.sqrt(np.var(trace) / 100.0))
    plan = plan_extension(res, precision=1.0, max_draws=10**9)
    assert (plan.draws, plan.drop) == (8 * 2000 - 1000, 1000), plan
    res.llc_mcse = float(np.sqrt(np.var(trace) / 4000.0))  # the MCSE implies more: ArviZ's ESS sizes it
    plan = plan_extension(res, precision=1.0, max_draws=10**9)
    assert (plan.draws, plan.drop) == (math.ceil(2.4 * 2000) - 1000, 1000), plan
