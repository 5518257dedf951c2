"""The samplers as optax transformations (:mod:`slt.samplers._optax`): a plain optax loop, with the user's own
``jax.grad`` on the minibatches of :func:`slt.samplers.minibatch_indices`, reproduces the driver's chains.

What is bitwise and what is not. The minibatch indices and the noise keys are the driver's, bit for bit, and fed
the same gradient SGHMC moves exactly as its kernel (``test_one_step_matches_kernel``). The losses are not: the
driver evaluates ``value_and_grad`` vmapped over chains inside its scan, a user loop a plain jitted loss, and XLA
rounds the two differently, already at step 0 where both sit at w* on the same minibatch (observed 0.9e-7
to 3.6e-7 relative, up to 3 float32 ulp). On top of that SGLD and RMSprop-SGLD round the move differently,
``w + (-(ε/2)G + sqrt(ε)ξ)`` against the kernel's ``(w - (ε/2)G) + sqrt(ε)ξ``: at most 2 ulp per coordinate and
step (``test_one_step_matches_kernel``). Those ulp-sized differences are not amplified: γ = 100 contracts the
chain by about εγ/2 per step and they add up like a random walk, so over 300 steps the relative loss difference
stays at a few float32 ulp (observed ≤ 5.5e-7 for all three samplers, for chain 0 of one chain and chains 1 and 2
of three, on jax 0.10 and 0.12).
``LOSS_RTOL`` = 4e-6 (32 ulp) leaves a margin of 7 over that and is 9 times below what a 0.1% error in nβ gives
(3.6e-5), so the comparison still distinguishes the driver's chain from a slightly different one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import slt
from slt._src.driver import RNG_BLOCK, run_chains
from slt.posterior import LocalPosterior, default_nbeta
from slt.samplers import (
    minibatch_indices,
    normal_like,
    rmsprop_sgld,
    rmsprop_sgld_transform,
    sghmc,
    sghmc_transform,
    sgld,
    sgld_transform,
)

try:  # being moved from slt.llc to slt.targets
    from slt.targets import check_loss_at_center, make_target
except ImportError:
    from slt.llc import check_loss_at_center, make_target

NUM_STEPS = 300  # three RNG blocks
BATCH_SIZE = 32
LOCALIZATION = 100.0
LOSS_RTOL = 4e-6  # 32 float32 ulp: see the module docstring

SAMPLERS = {  # name: (transform, kernel factory, sampler_params)
    "sgld": (sgld_transform, sgld, {"step_size": 1e-3}),
    "rmsprop_sgld": (rmsprop_sgld_transform, rmsprop_sgld, {"step_size": 1e-4, "alpha": 0.99, "eps": 0.1}),
    "sghmc": (sghmc_transform, sghmc, {"step_size": 1e-3, "friction": 0.1}),
}


def _transform(name, chain_key, center, nbeta, num_steps=NUM_STEPS):
    make, _, params = SAMPLERS[name]
    params = dict(params)
    step_size = params.pop("step_size")
    return make(
        step_size, nbeta=nbeta, localization=LOCALIZATION, center=center, key=chain_key, num_steps=num_steps, **params
    )


def _optax_loop(problem, tx, chain_key, num_steps):
    """The user's loop: minibatch from ``minibatch_indices``, their own ``jax.grad``, ``optax.apply_updates``."""
    num_data = problem.num_data

    @jax.jit
    def step(params, state):
        idx = minibatch_indices(chain_key, state.step, batch_size=BATCH_SIZE, num_data=num_data, num_steps=num_steps)
        batch = jax.tree_util.tree_map(lambda a: a[idx], problem.data)
        loss = problem.loss_fn(params, batch)
        grads = jax.grad(problem.loss_fn)(params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss, idx

    params, state = problem.params, tx.init(problem.params)
    losses, indices = [], []
    for _ in range(num_steps):
        params, state, loss, idx = step(params, state)
        losses.append(loss)
        indices.append(idx)
    return np.asarray(losses), np.asarray(indices), params


@pytest.mark.parametrize(
    "name, num_chains, chain",
    [("sgld", 1, 0), ("sgld", 3, 2), ("rmsprop_sgld", 1, 0), ("sghmc", 3, 1)],
)
def test_optax_loop_reproduces_driver(small_dln, name, num_chains, chain):
    """Chain ``chain`` of ``run_chains(num_chains=...)``: the same minibatches and, step by step, the same losses
    up to float32 rounding (module docstring), and the driver's final position."""
    problem = small_dln
    target = make_target(problem.loss_fn, problem.params, problem.data)
    example_losses = check_loss_at_center(target, 1024)
    nbeta = default_nbeta(problem.num_data)
    key = jax.random.key(7)
    trace = run_chains(
        target,
        key=key,
        example_losses_at_center=example_losses,
        nbeta=nbeta,
        localization=LOCALIZATION,
        num_chains=num_chains,
        num_steps=NUM_STEPS,
        batch_size=BATCH_SIZE,
        sampler=name,
        sampler_params=SAMPLERS[name][2],
    )
    chain_key = jax.random.split(key, num_chains)[chain]  # the driver's key of chain `chain`
    tx = _transform(name, chain_key, problem.params, nbeta)
    losses, indices, final = _optax_loop(problem, tx, chain_key, NUM_STEPS)

    # The same minibatches: L_B(w*) on the loop's indices is the driver's (a float32 mean of 32 losses; one wrong
    # index would move it by ~1/32 of a per-example loss).
    paired = np.mean(example_losses.astype(np.float64)[indices], axis=1)
    np.testing.assert_allclose(trace.loss_at_center[chain], paired, rtol=1e-6)

    # The same chain: nothing rounds the losses apart by more than a few ulp (module docstring).
    np.testing.assert_allclose(losses, trace.loss[chain], rtol=LOSS_RTOL, atol=0)
    assert losses.std() > 100 * LOSS_RTOL * losses.mean()  # the chain moved: the comparison means something

    # The driver's final state is the one after its last RNG block: step NUM_STEPS here.
    driver_final = jax.tree_util.tree_map(lambda a: np.asarray(a)[chain], trace.final_state.position)
    for mine, theirs in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(driver_final)):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=NUM_STEPS * np.finfo(np.float32).eps)


def _linear_loss(position, frozen, batch):
    """A loss whose gradient is ``batch`` exactly: the kernel and the transform then see the same gradient."""
    del frozen
    return sum(jnp.vdot(b, w) for b, w in zip(jax.tree_util.tree_leaves(batch), jax.tree_util.tree_leaves(position)))


def _driver_kernel_key(chain_key, step, num_steps):
    """The driver's kernel key of step ``step`` of a chain (slt._src.driver's module docstring)."""
    block = min(RNG_BLOCK, num_steps)
    b, j = divmod(step, block)
    _, step_key = jax.random.split(jax.random.fold_in(chain_key, b))
    return jax.random.split(step_key, block)[j]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_one_step_matches_kernel(small_dln, name):
    """Fed the same gradients, the transform moves as the registered kernel does with the driver's key of the same
    step: SGHMC bit for bit (the update is the new momentum and ``w + v`` is the kernel's position step), SGLD and
    RMSprop-SGLD within 2 ulp per coordinate, the one rounding the two orders of the sum can differ by:
    ``fl(fl(w - p) + q)`` and ``fl(w + fl(q - p))`` are each within ulp(|w| + |p| + |q|) of ``w - p + q``."""
    _, factory, params = SAMPLERS[name]
    center = small_dln.params
    nbeta = default_nbeta(small_dln.num_data)
    num_steps = 150  # crosses a block boundary (steps 100..)
    chain_key = jax.random.split(jax.random.key(3), 4)[1]
    posterior = LocalPosterior(_linear_loss, center, (), jnp.float32(nbeta), jnp.float32(LOCALIZATION))
    algorithm = factory(posterior, **{k: jnp.float32(v) for k, v in params.items()})
    tx = _transform(name, chain_key, center, nbeta, num_steps=num_steps)
    kernel_step = jax.jit(algorithm.step)
    tx_update = jax.jit(tx.update)

    rng = np.random.default_rng(0)
    state, tx_state = algorithm.init(center), tx.init(center)
    for t in [0, 1, 2, 99, 100, 101, 149]:
        w = state.position
        grads = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), w)
        tx_state = tx_state._replace(step=jnp.asarray(t))
        updates, tx_state = tx_update(grads, tx_state, w)
        mine = optax.apply_updates(w, updates)
        state, _ = kernel_step(_driver_kernel_key(chain_key, t, num_steps), state, grads)
        if name == "sghmc":
            for a, b in zip(jax.tree_util.tree_leaves((mine, tx_state.momentum)), jax.tree_util.tree_leaves(state)):
                np.testing.assert_array_equal(a, b)
            continue
        # the kernel's drift p and noise q, recomputed from its formula, bound the rounding
        noise = normal_like(_driver_kernel_key(chain_key, t, num_steps), w)
        step_size = params["step_size"]
        for m, k, w0, g, c, z, v in zip(
            *(jax.tree_util.tree_leaves(x) for x in (mine, state.position, w, grads, center, noise)),
            jax.tree_util.tree_leaves(getattr(state, "square_avg", w)),
        ):
            w0, g, c, z = (np.asarray(x, np.float64) for x in (w0, g, c, z))
            precond = 1 / (np.sqrt(np.asarray(v, np.float64)) + params["eps"]) if name == "rmsprop_sgld" else 1.0
            drift = 0.5 * step_size * precond * np.abs(nbeta * g + LOCALIZATION * (w0 - c))
            scale = np.sqrt(step_size * precond) * np.abs(z)
            ulp = np.spacing(np.float32(np.abs(w0) + drift + scale))
            assert np.all(np.abs(np.asarray(m, np.float64) - np.asarray(k, np.float64)) <= 2 * ulp)


def test_minibatch_indices(small_dln):
    """Rows of the driver's per-block draw: a step's indices depend on the step and the block length only;
    ``batch_size == num_data`` is the whole data set in order, as in the driver."""
    key = jax.random.key(0)
    n = small_dln.num_data
    a = minibatch_indices(key, 5, batch_size=16, num_data=n, num_steps=1000)
    b = minibatch_indices(key, jnp.asarray(5), batch_size=16, num_data=n, num_steps=300)  # same block of 100
    assert a.shape == (16,) and np.all((0 <= a) & (a < n))
    np.testing.assert_array_equal(a, b)
    # step 55 is row 55 of block 0 with blocks of 100, row 5 of block 1 with blocks of 50: other draws
    c = minibatch_indices(key, 55, batch_size=16, num_data=n, num_steps=1000)
    d = minibatch_indices(key, 55, batch_size=16, num_data=n, num_steps=50)
    assert not np.array_equal(c, d)
    np.testing.assert_array_equal(minibatch_indices(key, 3, batch_size=n, num_data=n, num_steps=10), np.arange(n))
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_indices(key, 0, batch_size=n + 1, num_data=n, num_steps=10)
    with pytest.raises(ValueError, match="num_steps"):
        minibatch_indices(key, 0, batch_size=4, num_data=n, num_steps=0)


def test_update_needs_params(small_dln):
    tx = sgld_transform(
        1e-3, nbeta=10.0, localization=1.0, center=small_dln.params, key=jax.random.key(0), num_steps=10
    )
    state = tx.init(small_dln.params)
    with pytest.raises(ValueError, match="params"):
        tx.update(small_dln.params, state)
    # a legacy uint32 key is accepted, a missing one is not
    legacy = sgld_transform(1.0, nbeta=1.0, localization=1.0, center=0.0, key=jax.random.PRNGKey(0), num_steps=1)
    assert legacy.init(0.0).key.shape == ()
    with pytest.raises(ValueError, match="key"):
        sgld_transform(1.0, nbeta=1.0, localization=1.0, center=0.0, key=None, num_steps=1)
    assert isinstance(tx, optax.GradientTransformation) and slt.samplers.sgld_transform is sgld_transform
