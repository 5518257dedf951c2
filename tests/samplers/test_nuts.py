"""The NUTS kernel (:mod:`slt.samplers.nuts`) through the driver and on the Gaussian of the stationary-law tests.

Tolerances follow the Monte-Carlo error: the chains are independent, so the standard error of a mean over
chains is the spread of the per-chain means over √(number of chains); each test first asserts that this
error is small enough for the comparison to mean something, then that the estimate is within Z_MAX of them.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from test_sampler_stationary import COV, MEAN, Z_MAX, check_gaussian, simulate

from slt._src import driver
from slt.models.regression import quadratic_llc
from slt.samplers import NUTS, sampler_spec
from slt.targets import make_target

WARMUP = 300
SAMPLER = NUTS(num_warmup=WARMUP)  # one static setting for the driver runs: they share compilations
NUM_CHAINS, NUM_STEPS = 16, 1300


@pytest.fixture(scope="module")
def driver_runs(regression):
    """Linear regression (d = 4, n = 1000) at nβ = n/log n, γ = 1, full batch, one key, the run cut into
    chunks of 100 and of 500 steps (13 chunks; 3 chunks, the last one part empty)."""
    target = make_target(regression.loss_fn, regression.params, regression.data)
    n = regression.num_data
    common = dict(
        key=jax.random.key(7),
        example_losses_at_center=driver.per_example_losses(target),
        nbeta=n / math.log(n),
        localization=1.0,
        num_chains=NUM_CHAINS,
        num_steps=NUM_STEPS,
        batch_size=n,
        sampler=SAMPLER,
        sampler_params={"target_accept_prob": 0.8},
    )
    return {chunk: driver.sample(target, steps_per_chunk=chunk, **common) for chunk in (100, 500)}


def test_the_registered_spec():
    spec = sampler_spec("nuts")
    assert spec.full_batch_only and spec.adaptive_warmup
    assert spec.factory == NUTS() and hash(NUTS(num_warmup=5)) == hash(NUTS(num_warmup=5))
    with pytest.raises(ValueError, match="`num_warmup`"):
        NUTS(num_warmup=-1)
    with pytest.raises(ValueError, match="`max_tree_depth`"):
        NUTS(max_tree_depth=0)


def test_same_key_same_numbers_for_any_chunking(driver_runs):
    """The adaptation lives in the chain state, so cutting the run into chunks changes nothing, bit for bit."""
    a, b = driver_runs[100], driver_runs[500]
    assert (a.num_chunks, b.num_chunks) == (13, 3)
    assert set(a.stats) == {"loss", "accept_prob", "num_steps", "diverging", "step_size"}
    for name in a.stats:
        assert a.stats[name].shape == (NUM_CHAINS, NUM_STEPS)
        np.testing.assert_array_equal(a.stats[name], b.stats[name], err_msg=name)
    np.testing.assert_array_equal(a.divergence_step, b.divergence_step)
    for x, y in zip(jax.tree_util.tree_leaves(a.final_state), jax.tree_util.tree_leaves(b.final_state)):
        np.testing.assert_array_equal(x, y)


def test_through_the_driver_matches_the_exact_llc_of_linear_regression(regression, driver_runs):
    """λ̂ = nβ (E[L_n] − L_n(w*)) over the draws after the warmup, against Σ t h_i / (2 (t h_i + γ))."""
    run = driver_runs[100]
    n = regression.num_data
    nbeta = n / math.log(n)
    x = np.asarray(regression.data[0], np.float64)
    exact = quadratic_llc(np.linalg.eigvalsh(x.T @ x / n), nbeta, 1.0)
    losses = run.stats["loss"].astype(np.float64)
    loss_at_center = losses[:, 0]  # every chain starts at w*: its first record is L_n(w*)
    np.testing.assert_array_equal(loss_at_center, loss_at_center[0])
    per_chain = nbeta * (losses[:, WARMUP:].mean(axis=1) - loss_at_center)
    se = per_chain.std(ddof=1) / math.sqrt(NUM_CHAINS)
    assert se < 0.015 * exact  # so that Z_MAX standard errors are a sharp test
    assert abs(per_chain.mean() - exact) < Z_MAX * se, (per_chain.mean(), exact, se)
    # The warmup ended: one step size per chain from then on (the dual-averaging average, smaller than its last
    # iterate, so the acceptance statistic ends above its target, as in Stan), not far below the target.
    kept_steps = run.stats["step_size"][:, WARMUP:]
    np.testing.assert_array_equal(kept_steps, kept_steps[:, :1] * np.ones_like(kept_steps))
    assert 0.8 - 0.15 < run.stats["accept_prob"][:, WARMUP:].mean() < 1.0  # nuts_llc warns below target - 0.15
    assert not run.stats["diverging"][:, WARMUP:].any() and np.all(run.divergence_step == -1)


@pytest.mark.parametrize("dense_mass", [False, True])
def test_samples_the_gaussian_of_the_stationary_tests(dense_mass):
    """The non-diagonal Gaussian posterior of tests/samplers/test_sampler_stationary.py (which skips NUTS at its
    fixed small step): mean and covariance within Z_MAX standard errors, with a diagonal or a dense adapted mass
    matrix, starting the adaptation from a step 100 times too small."""
    means, moments, _ = simulate(
        NUTS(num_warmup=WARMUP, dense_mass=dense_mass),
        {"step_size": 0.005, "target_accept_prob": 0.8},
        seed=21,
        num_chains=200,
        num_burnin=WARMUP,
        num_steps=1000,
    )
    se = check_gaussian(means, moments, MEAN, COV)
    assert np.all(se < 0.02 * np.sqrt(np.outer(np.diag(COV), np.diag(COV))))  # a sharp test
