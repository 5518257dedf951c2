"""Every registered sampler end-to-end through ``slt.estimate_llc``: the protocol, determinism, a λ̂ that agrees
with the exact value for linear regression, and the per-step statistics each one reports."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COMPILES, SAMPLER_CHUNK

import slt
from slt.models.regression import quadratic_llc
from slt.posterior import LocalPosterior
from slt.samplers import SamplerSpec, register, registered_samplers, sampler_spec, sgld, unregister

RUN = dict(num_chains=4, num_draws=600, num_burnin=150)


def hessian_eigenvalues(problem):
    x = np.asarray(problem.data[0], dtype=np.float64)
    return np.linalg.eigvalsh(x.T @ x / x.shape[0])


@pytest.mark.parametrize("name", sorted(registered_samplers()))
def test_protocol(name):
    """Every registered sampler: init/step are pure, jittable and vmappable; info is a NamedTuple of scalars
    starting with ``loss``. Its declared capabilities hold: a ``with_acceptance`` variant passes the same checks,
    moves to the same positions and adds an ``acceptance_rate`` in [0, 1]; a ``step_gain`` is positive."""
    spec = sampler_spec(name)
    assert spec.name == name

    def loss(w, frozen, batch):
        del frozen
        return 0.5 * jnp.mean((batch[:, None] * w["a"]) ** 2) + jnp.sum(w["b"] ** 2)

    center = {"a": jnp.ones(3), "b": jnp.zeros((2, 2))}
    posterior = LocalPosterior(loss, center, None, jnp.float32(50.0), jnp.float32(1.0))
    batch = jnp.linspace(-1.0, 1.0, 8)
    keys = jax.random.split(jax.random.key(0), 5)

    def check(factory):
        algorithm = factory(posterior, step_size=jnp.float32(1e-3))

        def run(key):
            state = algorithm.init(center)
            return algorithm.step(key, state, batch)

        (state, info), (state2, info2) = jax.jit(jax.vmap(run))(keys), jax.jit(jax.vmap(run))(keys)
        assert info._fields[0] == "loss"
        for a, b in zip(jax.tree_util.tree_leaves((state, info)), jax.tree_util.tree_leaves((state2, info2))):
            np.testing.assert_array_equal(a, b)
        assert all(x.shape == (5,) for x in info)
        assert jax.tree_util.tree_structure(state.position) == jax.tree_util.tree_structure(center)
        np.testing.assert_allclose(info.loss, loss(center, None, batch), rtol=1e-6)  # the loss where it started
        return state, info

    state, _ = check(spec.factory)
    if spec.with_acceptance is not None:
        state_acc, info_acc = check(spec.with_acceptance)
        for a, b in zip(jax.tree_util.tree_leaves(state.position), jax.tree_util.tree_leaves(state_acc.position)):
            np.testing.assert_array_equal(a, b)
        assert np.all((info_acc.acceptance_rate >= 0) & (info_acc.acceptance_rate <= 1))
    if spec.step_gain is not None:
        gain = spec.step_gain(dict(spec.stationary_test or {}))
        assert math.isfinite(gain) and gain > 0


@pytest.mark.parametrize(
    ("factory", "defaults"),
    [
        (slt.samplers.sghmc, {"friction": 0.1}),
        (slt.samplers.sgnht, {"diffusion": 0.1}),
        (slt.samplers.rmsprop_sgld, {"alpha": 0.99, "eps": 0.1}),
    ],
)
def test_documented_defaults(factory, defaults):
    """Leaving a hyperparameter out gives the same chain as passing its documented default."""
    posterior = LocalPosterior(lambda w, f, b: jnp.sum((w - b) ** 2), jnp.zeros(3), None, 20.0, 1.0)
    batch = jnp.asarray([0.5, -0.2, 0.1])

    def final_position(algorithm):
        state = algorithm.init(jnp.zeros(3))
        for key in jax.random.split(jax.random.key(1), 3):
            state, _ = algorithm.step(key, state, batch)
        return np.asarray(state.position)

    positions = [final_position(factory(posterior, step_size=1e-2, **kw)) for kw in ({}, defaults)]
    np.testing.assert_array_equal(positions[0], positions[1])


def _exact_llc(problem, step_size, sampler):
    """λ for the local posterior; for SGLD the exact value of its discrete chain (SCIENCE.md §1)."""
    n = problem.num_data
    h = hessian_eigenvalues(problem)
    return quadratic_llc(h, n / math.log(n), 1.0, step_size=step_size if sampler == "sgld" else None)


@pytest.mark.parametrize(
    ("name", "step_size"),
    [("sgld", 3e-4), ("sghmc", 1e-4), ("sgnht", 1e-4), ("mala", 1e-3), ("rmsprop_sgld", 3e-5)],
)
def test_estimate_llc_runs_and_agrees_with_linear_regression(regression, key, name, step_size):
    """Full batch, so the only errors are Monte Carlo and discretization. SGLD is compared with its exact
    discrete value, MALA with the exact one; SGHMC and SGNHT at ε c_max ≈ 0.015 have O(ε) bias well under the
    MC error. RMSprop-SGLD has no exact value here (its preconditioner depends on the position; see
    tests/samplers/test_sampler_stationary.py), so it is only checked to be finite and of the right size."""
    n = regression.num_data
    kwargs = dict(key=key, step_size=step_size, sampler=name, batch_size=n, **RUN)
    res = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, **kwargs)
    again = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, **kwargs)
    np.testing.assert_array_equal(res.loss_trace, again.loss_trace)
    assert res.llc_mean == again.llc_mean
    assert res.sampler == name
    assert np.isfinite(res.llc_mean) and not res.diverged.any()
    exact = _exact_llc(regression, step_size, name)
    if name == "rmsprop_sgld":
        assert 0.5 * exact < res.llc_mean < 2 * exact, res.summary()
    else:
        assert abs(res.llc_mean - exact) < 4 * res.llc_mcse, (res.llc_mean, exact, res.llc_mcse)
        assert res.llc_mcse < 0.15 * exact  # the run is long enough for the comparison to mean something


def test_sampler_params_reach_the_kernel(regression, key):
    """``sampler_params`` are traced hyperparameters: a new value changes the chain without recompiling."""
    kwargs = dict(key=key, step_size=1e-4, sampler="sghmc", batch_size=100, num_chains=2, num_draws=30, num_burnin=5)
    a = slt.estimate_llc(
        regression.loss_fn, regression.params, regression.data, sampler_params={"friction": 0.1}, **kwargs
    )
    before = COMPILES(SAMPLER_CHUNK)
    b = slt.estimate_llc(
        regression.loss_fn, regression.params, regression.data, sampler_params={"friction": 0.5}, **kwargs
    )
    assert COMPILES(SAMPLER_CHUNK) == before
    assert not np.array_equal(a.loss_trace, b.loss_trace)
    assert b.sampler_params == {"friction": 0.5}


def test_sgnht_records_its_thermostat(regression, key):
    res = slt.estimate_llc(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=key,
        step_size=1e-4,
        sampler="sgnht",
        batch_size=50,
        num_chains=2,
        num_draws=200,
        num_burnin=100,
    )
    xi = res.sampler_stats["thermostat"]
    assert xi.shape == (2, 200) and np.all(np.isfinite(xi))
    # Minibatch gradient noise heats the momentum, so the thermostat's friction rises above its start a = 0.1.
    assert xi.mean() > 0.1


def test_mala_reports_acceptance_and_a_too_large_step_is_rejected(regression, key):
    n = regression.num_data
    c_max = n / math.log(n) * hessian_eigenvalues(regression).max() + 1.0
    common = dict(key=key, sampler="mala", num_chains=2, num_draws=200, num_burnin=20)
    good = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, step_size=0.3 / c_max, **common)
    bad = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, step_size=8.0 / c_max, **common)
    for res in (good, bad):
        acc = res.sampler_stats["acceptance_rate"]
        assert acc.shape == (2, 200) and np.all((acc >= 0) & (acc <= 1))
        assert res.acceptance_rate.shape == (2,)
        assert res.batch_size == n  # full batch by default for MALA
        assert set(np.unique(res.sampler_stats["is_accepted"])) <= {False, True}
    assert good.acceptance_rate.mean() > 0.9
    assert bad.acceptance_rate.mean() < 0.1
    # A rejected proposal leaves the chain where it was: MALA never diverges, even with ε c_max = 8.
    assert np.isfinite(bad.llc_mean) and not bad.diverged.any()


def test_sgld_with_acceptance_is_sgld(small_dln, key):
    """Same key, same minibatches, same loss trace bit for bit; plus a per-step acceptance probability."""
    kwargs = dict(key=key, step_size=1e-4, num_chains=2, num_draws=40, num_burnin=10, batch_size=50)
    a = slt.estimate_llc(small_dln.loss_fn, small_dln.params, small_dln.data, **kwargs)
    b = slt.estimate_llc(
        small_dln.loss_fn, small_dln.params, small_dln.data, sampler=slt.samplers.sgld_with_acceptance, **kwargs
    )
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)
    np.testing.assert_array_equal(a.burnin_loss_trace, b.burnin_loss_trace)
    acc = b.sampler_stats["acceptance_rate"]
    assert acc.shape == (2, 40) and np.all((acc >= 0) & (acc <= 1))
    assert "acceptance_rate" not in a.sampler_stats


# ------------------------------------------------------------------------------------- the registry, from outside
@pytest.fixture
def user_sampler():
    """A user's factory registered under its own name with a declared capability; unregistered afterwards."""

    def my_sgld(posterior, step_size):
        return sgld(posterior, step_size=step_size)

    spec = register(SamplerSpec("my_sgld", my_sgld, full_batch_only=True))
    yield spec
    unregister("my_sgld")


def test_user_registered_sampler_runs_by_name_with_its_capabilities(regression, key, user_sampler):
    """``sampler="my_sgld"`` resolves through the registry and ``estimate_llc`` honours the declared
    ``full_batch_only``: the batch defaults to n and a minibatch is refused, by name or by factory. The chain is
    SGLD's, bit for bit (the factory only wraps it)."""
    n = regression.num_data
    problem = (regression.loss_fn, regression.params, regression.data)
    kwargs = dict(key=key, step_size=1e-4, num_chains=2, num_draws=40, num_burnin=10)
    res = slt.estimate_llc(*problem, sampler="my_sgld", **kwargs)
    assert res.sampler == "my_sgld" and res.batch_size == n
    reference = slt.estimate_llc(*problem, sampler="sgld", batch_size=n, **kwargs)
    np.testing.assert_array_equal(res.loss_trace, reference.loss_trace)
    assert res.llc_mean == reference.llc_mean
    assert sampler_spec(user_sampler.factory) is user_sampler  # passed as the factory, it keeps its capabilities
    for sampler in ("my_sgld", user_sampler.factory):
        with pytest.raises(ValueError, match="full-batch only"):
            slt.estimate_llc(*problem, sampler=sampler, batch_size=100, **kwargs)


def test_a_duplicate_sampler_name_is_an_error(user_sampler):
    """Registering a taken name raises, says how to replace, and replaces nothing; ``replace=True`` replaces."""
    with pytest.raises(ValueError, match=r"'sgld' is already registered.*`replace=True`"):
        register(SamplerSpec("sgld", user_sampler.factory))
    with pytest.raises(ValueError, match="'my_sgld' is already registered"):
        register(SamplerSpec("my_sgld", sgld))
    assert sampler_spec("sgld").factory is sgld and sampler_spec("my_sgld") is user_sampler
    replacement = register(dataclasses.replace(user_sampler, full_batch_only=False), replace=True)
    assert sampler_spec("my_sgld") is replacement and not sampler_spec("my_sgld").full_batch_only


def test_unregistered_factories_and_unknown_names(regression, key):
    """A factory never registered gets a default spec (no capabilities); an unknown name or a spec that is not
    one is refused with the registered names / the field at fault."""

    def plain(posterior, step_size):
        return sgld(posterior, step_size=step_size)

    spec = sampler_spec(plain)
    assert (spec.name, spec.factory, spec.full_batch_only) == ("plain", plain, False)
    assert spec.with_acceptance is spec.step_gain is spec.calibration_check is None
    assert "plain" not in registered_samplers()
    with pytest.raises(ValueError, match=r"must be one of \[.*'sgld'.*\]"):
        slt.estimate_llc(
            regression.loss_fn, regression.params, regression.data, key=key, step_size=1e-4, sampler="no_such_sampler"
        )
    with pytest.raises(ValueError, match="no sampler named 'no_such_sampler'"):
        unregister("no_such_sampler")
    with pytest.raises(ValueError, match="factory"):
        SamplerSpec("broken", "sgld")
    with pytest.raises(ValueError, match="step_size"):
        SamplerSpec("broken", plain, stationary_test={"step_size": 1e-3})
