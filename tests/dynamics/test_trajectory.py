"""llc_trajectory: one estimate per checkpoint, batched, compiled once, equal to single estimates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
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


def test_weight_norms_and_effective_step_beside_the_llc(small_dln, checkpoints, tmp_path):
    """Each record carries ‖w_t‖₂ (total and per layer) and ‖w_t − w_prev‖ / (‖w_t‖ Δs); saved and loaded back."""
    steps = [0, 10, 20, 40, 50]
    traj = llc_trajectory(
        small_dln.loss_fn,
        checkpoints,
        small_dln.data,
        key=jax.random.key(5),
        steps=steps,
        checkpoint_batch_size=2,
        **KW,
    )
    flat = [np.concatenate([np.ravel(np.asarray(w, np.float64)) for w in c]) for c in checkpoints]
    np.testing.assert_allclose(traj.weight_norm, [np.linalg.norm(f) for f in flat], rtol=1e-12)
    assert set(traj.group_norms) == {"0", "1"}  # a list of layers: one group per layer
    for g in (0, 1):
        expected = [np.linalg.norm(np.asarray(c[g], np.float64)) for c in checkpoints]
        np.testing.assert_allclose(traj.group_norms[str(g)], expected, rtol=1e-12)
    assert np.isnan(traj.effective_step[0]) and np.isnan(traj.group_effective_step["1"][0])
    for k in range(1, 5):
        expected = np.linalg.norm(flat[k] - flat[k - 1]) / np.linalg.norm(flat[k]) / (steps[k] - steps[k - 1])
        np.testing.assert_allclose(traj.effective_step[k], expected, rtol=1e-12)
    assert traj.effective_step[1] == pytest.approx(1 / 10)  # from w = 0: the whole of w_1, over 10 steps
    assert traj.effective_step[4] == 0.0  # identical checkpoints
    assert not traj.step_from_update.any()
    assert "|w|" in traj.summary() and "weight norm by group" in traj.summary()
    fig = traj.plot_norm(groups=True, effective_step=True)
    assert len(fig.axes) == 3  # LLC, its twin for the norm, and the effective step
    traj.save(tmp_path / "traj")
    back = slt.load(tmp_path / "traj")
    np.testing.assert_array_equal(back.weight_norm, traj.weight_norm)
    np.testing.assert_array_equal(back.group_effective_step["0"], traj.group_effective_step["0"])
    assert back.group_norms.keys() == traj.group_norms.keys()


def test_weight_norm_groups_of_nnx_and_nested_pytrees():
    from flax import nnx

    from slt.dynamics import weight_norms

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(2, 3, rngs=rngs)
            self.scale = nnx.Param(jnp.full((3,), 2.0))
            self.count = nnx.BatchStat(jnp.full((5,), 100.0))  # not a parameter: left out

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.block = Block(rngs)
            self.head = nnx.Linear(3, 1, rngs=rngs)
            self.temperature = nnx.Param(jnp.array(3.0))

    net = Net(nnx.Rngs(0))
    total, groups = weight_norms(net)
    kernel = np.asarray(net.block.dense.kernel[...])
    assert set(groups) == {"block.dense", "block", "head", "temperature"}  # per submodule; a root Param alone
    assert groups["block.dense"] == pytest.approx(np.linalg.norm(kernel))  # the bias starts at zero
    assert groups["block"] == pytest.approx(np.sqrt(12.0)) and groups["temperature"] == pytest.approx(3.0)
    assert total == pytest.approx(np.sqrt(sum(v**2 for v in groups.values())))
    assert weight_norms(nnx.state(net))[0] == pytest.approx(total)  # a full state: its Params only
    # Linen-style variables: the single root entry is descended; groups are the layers
    linen = {"params": {"Dense_0": {"kernel": np.ones((2, 2))}, "Dense_1": {"kernel": np.ones(3)}}}
    assert weight_norms(linen)[1] == pytest.approx({"Dense_0": 2.0, "Dense_1": np.sqrt(3.0)})
    assert weight_norms(np.ones(4))[1] == {"w": 2.0}
    custom = weight_norms(linen, groups=lambda path: path[-1])  # by variable name
    assert custom[1] == pytest.approx({"kernel": np.sqrt(7.0)})
    with pytest.raises(ValueError, match="groups"):
        weight_norms(linen, groups="layer")


@pytest.fixture(scope="module")
def rescaled_dln():
    """A two-layer linear network at its rank-2 least-squares factorization w* = (W1, W2), widths (3, 2, 3):
    λ = 4, m = 1 (Aoyagi; slt.theory.dln), and the rescaled point (2 W1, W2 / 2), which computes the same
    function (and has the same loss), so the same λ, with another weight norm."""
    p = slt.models.deep_linear_network([3, 2, 3], 2, num_data=1000, seed=0)
    w1, w2 = p.params
    return p, [[w1, w2], [2.0 * w1, 0.5 * w2]]


def test_llc_is_the_same_at_rescaled_points_while_the_norm_changes(rescaled_dln):
    """The true λ is invariant under (W1, W2) -> (c W1, W2 / c); the estimator is not exactly: its isotropic
    localization γ and isotropic SGLD noise see the rescaled geometry (the transverse Hessian eigenvalues go from
    0.48..1.30 at c = 1 to 0.13..2.75 at c = 2). At nβ = n/log n = 145, γ = 1, ε = 5e-4, the quadratic
    prediction of that effect (slt.models.regression.quadratic_llc with each point's Hessian, γ and ε) is 4.026
    at c = 1 and 4.082 at c = 2, a difference of 0.055, below the Monte-Carlo error; exact NUTS at γ = 1
    measured 4.025 ± 0.049 (c = 1) and 3.910 ± 0.049 (c = 2) (its departure from the quadratic value, the finite
    nβ, is at most 0.06 ± 0.05). So the estimates must agree within 3 combined MCSEs plus the predicted
    difference, and each lie within 3 MCSEs plus its predicted bias plus 0.1 (that NUTS departure) of λ = 4,
    while ‖w‖ changes by a factor 1.46 and the layer norms by 2 and 1/2 exactly."""
    from slt.models.regression import quadratic_llc

    p, ckpts = rescaled_dln
    lam, mult = slt.theory.dln([3, 2, 3], 2)
    assert (lam, mult) == (4, 1)
    kw = dict(step_size=5e-4, localization=1.0, num_chains=4, num_draws=8000, num_burnin=2000, batch_size=1000)
    traj = llc_trajectory(p.loss_fn, ckpts, p.data, key=jax.random.key(0), steps=[0, 1], **kw)
    # the function, and so the loss, is unchanged; the norms are not
    assert traj.init_loss[1] == pytest.approx(traj.init_loss[0], rel=1e-5)
    np.testing.assert_allclose(traj.group_norms["0"][1] / traj.group_norms["0"][0], 2.0, rtol=1e-12)
    np.testing.assert_allclose(traj.group_norms["1"][1] / traj.group_norms["1"][0], 0.5, rtol=1e-12)
    assert traj.weight_norm[1] / traj.weight_norm[0] > 1.4
    # the quadratic prediction of the estimator's target at each point (finite nβ, γ, ε)
    predicted = []
    for ckpt in ckpts:
        flat, unravel = jax.flatten_util.ravel_pytree(ckpt)
        hess = jax.hessian(lambda f, unravel=unravel: p.loss_fn(unravel(f), p.data))(flat)
        eig = np.linalg.eigvalsh(np.asarray(hess, np.float64))
        eig = eig[eig > 1e-3 * eig.max()]  # the 8 transverse directions (12 parameters, a 4-dim GL(2) orbit)
        assert eig.size == 8
        predicted.append(quadratic_llc(eig, traj.results[0].nbeta, 1.0, 5e-4))
    (a, b), (sa, sb) = traj.llc_mean, traj.llc_mcse
    assert abs(a - b) <= 3 * np.hypot(sa, sb) + abs(predicted[1] - predicted[0]), traj.summary()
    for k in range(2):
        bias = abs(predicted[k] - float(lam))
        assert abs(traj.llc_mean[k] - float(lam)) <= 3 * traj.llc_mcse[k] + bias + 0.1, traj.summary()
