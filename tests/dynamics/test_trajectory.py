"""llc_trajectory: one estimate per checkpoint, batched, compiled once, equal to single estimates."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import COMPILES, SAMPLER_CHUNK

import slt
from slt.dynamics.trajectory import llc_trajectory

KW = dict(step_size=1e-5, num_chains=2, num_draws=200, num_burnin=50, batch_size=50)


@pytest.fixture(scope="module")
def checkpoints(small_dln):
    return [[w * s for w in small_dln.params] for s in (0.0, 0.5, 0.9, 1.0, 1.0)]


def test_trajectory_matches_single_estimates_and_compiles_once(small_dln, checkpoints):
    key = jax.random.key(0)
    before = COMPILES(SAMPLER_CHUNK)
    traj = llc_trajectory(small_dln.loss_fn, checkpoints, small_dln.data, key=key, checkpoint_batch_size=2, **KW)
    assert COMPILES(SAMPLER_CHUNK) - before <= 1  # three chunks (the last padded), one compilation
    assert len(traj) == 5 and traj.steps.tolist() == [0, 1, 2, 3, 4]
    for i in (0, 2, 4):
        single = slt.estimate_llc(
            small_dln.loss_fn, checkpoints[i], small_dln.data, key=jax.random.fold_in(key, i), **KW
        )
        np.testing.assert_allclose(traj.results[i].loss_trace, single.loss_trace, rtol=1e-5, atol=1e-6)
    # identical checkpoints 3 and 4 get different keys, hence different chains
    assert not np.array_equal(traj.results[3].loss_trace, traj.results[4].loss_trace)
    # the training loss falls towards w*
    assert traj.init_loss[0] > traj.init_loss[1] > traj.init_loss[3]


def test_stacked_pytree_and_orbax_directory_forms(small_dln, checkpoints, tmp_path):
    import orbax.checkpoint as ocp

    key = jax.random.key(1)
    listed = llc_trajectory(small_dln.loss_fn, checkpoints[:3], small_dln.data, key=key, **KW)
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *checkpoints[:3])
    from_stack = llc_trajectory(small_dln.loss_fn, stacked, small_dln.data, key=key, stacked=True, **KW)
    np.testing.assert_allclose(listed.llc_mean, from_stack.llc_mean, rtol=1e-6)

    with ocp.CheckpointManager(tmp_path / "ckpts") as manager:
        for step, ckpt in zip((10, 20, 30), checkpoints[:3]):
            manager.save(step, args=ocp.args.StandardSave(ckpt))
        manager.wait_until_finished()
    from_dir = llc_trajectory(small_dln.loss_fn, str(tmp_path / "ckpts"), small_dln.data, key=key, **KW)
    assert from_dir.steps.tolist() == [10, 20, 30]
    np.testing.assert_allclose(from_dir.llc_mean, listed.llc_mean, rtol=1e-5)
    assert from_dir.plot() is not None


def test_trajectory_errors(small_dln, checkpoints):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="empty"):
        llc_trajectory(small_dln.loss_fn, [], small_dln.data, key=key, **KW)
    with pytest.raises(ValueError, match="steps"):
        llc_trajectory(small_dln.loss_fn, checkpoints, small_dln.data, key=key, steps=[1, 2], **KW)
    with pytest.raises(ValueError, match="structure"):
        llc_trajectory(small_dln.loss_fn, [checkpoints[0], checkpoints[0][:1]], small_dln.data, key=key, **KW)
    with pytest.raises(ValueError, match="does not exist"):
        llc_trajectory(small_dln.loss_fn, "/nonexistent/ckpts", small_dln.data, key=key, **KW)


def test_nnx_states_as_checkpoints():
    """Checkpoints of an NNX model given as nnx.State snapshots of its parameters."""
    import jax.numpy as jnp
    from flax import nnx

    class Linear(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(2, 1, rngs=rngs)

        def __call__(self, x):
            return self.dense(x)

    x = jax.random.normal(jax.random.key(0), (100, 2))
    y = x[:, :1] + 0.1 * jax.random.normal(jax.random.key(1), (100, 1))
    model = Linear(nnx.Rngs(0))
    states = []
    for scale in (0.5, 1.0):
        m = Linear(nnx.Rngs(0))
        m.dense.kernel[...] = scale * jnp.ones((2, 1))
        states.append(nnx.state(m, nnx.Param))
    kw = dict(step_size=1e-4, num_chains=2, num_draws=50, num_burnin=10, batch_size=20)
    traj = llc_trajectory(model, states, (x, y), loss=slt.losses.gaussian_nll, key=jax.random.key(2), **kw)
    assert len(traj) == 2 and traj.init_loss[0] != traj.init_loss[1]
    m1 = Linear(nnx.Rngs(0))
    nnx.update(m1, states[1])
    key1 = jax.random.fold_in(jax.random.key(2), 1)
    single = slt.estimate_llc(m1, (x, y), loss=slt.losses.gaussian_nll, key=key1, **kw)
    np.testing.assert_allclose(traj.results[1].loss_trace, single.loss_trace, rtol=1e-5, atol=1e-6)


def test_weight_restricted_trajectory_uses_each_checkpoints_frozen_leaves(small_dln):
    """With `where`, the frozen layer differs per checkpoint; each estimate must see its own."""
    key = jax.random.key(3)
    ckpts = [[w * s for w in small_dln.params] for s in (0.5, 1.0)]
    where = lambda path, leaf: path == (1,)  # noqa: E731  (only the second layer moves)
    traj = llc_trajectory(small_dln.loss_fn, ckpts, small_dln.data, key=key, where=where, **KW)
    for i in range(2):
        single = slt.estimate_llc(
            small_dln.loss_fn, ckpts[i], small_dln.data, key=jax.random.fold_in(key, i), where=where, **KW
        )
        np.testing.assert_allclose(traj.results[i].loss_trace, single.loss_trace, rtol=1e-5, atol=1e-6)


def test_auto_chooses_once_at_the_reference_and_keeps_the_choice(regression):
    """step_size="auto": one choice, at the reference checkpoint (default the last), applied to every record:
    the same ε, γ, nβ, warm-up, burn-in and draws; each checkpoint's chains warm up from its own w_t."""
    w = regression.params
    checkpoints = [w + 1.0, w, w, w]  # far from the minimum, then at it
    traj = llc_trajectory(
        regression.loss_fn,
        checkpoints,
        regression.data,
        key=jax.random.key(0),
        step_size="auto",
        steps=[0, 10, 20, 30],
        time_budget=60.0,
        checkpoint_batch_size=2,
    )
    auto = traj.auto
    assert traj.reference_step == 30 and auto is not None and auto.num_warmup > 0
    assert {r.step_size for r in traj.results} == {auto.step_size}
    assert {r.localization for r in traj.results} == {auto.localization}
    assert {r.llc_trace.shape for r in traj.results} == {(4, auto.num_draws)}
    # warmed up: the first recorded step is not at w_t (there λ̂ would be exactly 0)
    assert all(np.all(r.burnin_llc_trace[:, 0] != 0) for r in traj.results[1:])
    exact = slt.models.regression.quadratic_llc(
        np.linalg.eigvalsh(np.asarray(regression.data[0]).T @ np.asarray(regression.data[0]) / regression.num_data),
        auto.nbeta,
        auto.localization,
    )
    for r in traj.results[1:]:
        assert abs(r.llc_mean - exact) < 0.05 * exact + 4 * r.llc_mcse, traj.summary()
    # health: the first checkpoint is not a minimum (the chains find lower loss) and is flagged; the rest pass
    assert traj.failing.tolist() == [True, False, False, False], traj.health()
    assert traj.rhat.shape == traj.ess.shape == (4,)
    assert "step 0:" in traj.health() and "chosen once at step 30" in traj.summary()
    fig = traj.plot()
    assert any(line.get_label() == "fails a health check" for line in fig.axes[0].get_lines())
    # another reference: the choice is made there
    other = llc_trajectory(
        regression.loss_fn,
        checkpoints,
        regression.data,
        key=jax.random.key(0),
        step_size="auto",
        steps=[0, 10, 20, 30],
        time_budget=60.0,
        reference=1,
    )
    assert other.reference_step == 10
    with pytest.raises(ValueError, match="reference"):
        llc_trajectory(
            regression.loss_fn, checkpoints, regression.data, key=jax.random.key(0), step_size="auto", reference=4
        )
