"""LLCTracker in a plain optax loop and an nnx.Optimizer loop: records, and compiles nothing after the first call."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import slt
from slt.callbacks import LLCTracker

KW = dict(step_size=1e-5, num_chains=2, num_draws=100, num_burnin=20, batch_size=50)


class CompileCounter:
    """Counts XLA backend compilations through jax.monitoring."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


COUNTER = CompileCounter()


def test_tracker_in_a_plain_optax_loop(small_dln):
    p = small_dln
    params = [0.1 * jnp.ones_like(w) for w in p.params]
    tx = optax.sgd(0.05)
    opt_state = tx.init(params)

    @jax.jit
    def update(params, opt_state):
        grads = jax.grad(p.loss_fn)(params, p.data)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    probe = p.data[0][:16]
    tracker = LLCTracker(
        p.loss_fn,
        p.data,
        key=jax.random.key(0),
        every=10,
        probe=probe,
        output_fn=lambda ps, x: slt.models.dln.dln_forward(ps, x),
        **KW,
    )
    compiles_after_first = None
    for step in range(31):
        params, opt_state = update(params, opt_state)
        tracker(step, params)
        if step == 0:
            compiles_after_first = COUNTER.count
            assert compiles_after_first > 0  # the counter sees compilations at all
    assert tracker.steps == [0, 10, 20, 30]
    assert COUNTER.count == compiles_after_first, "a tracker call after the first compiled something"
    assert tracker.outputs().shape == (4, 16, 3)
    assert np.all(np.diff(tracker.train_loss) < 0)  # training makes progress
    traj = tracker.trajectory()
    assert traj.llc_mean.shape == (4,) and np.isfinite(traj.llc_mean).all()


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.layer1 = nnx.Linear(2, 8, rngs=rngs)
        self.layer2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.layer2(jnp.tanh(self.layer1(x)))


def test_tracker_in_an_nnx_optimizer_loop():
    x = jax.random.normal(jax.random.key(0), (200, 2))
    y = jnp.sin(x[:, :1]) + 0.1 * jax.random.normal(jax.random.key(1), (200, 1))
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        grads = nnx.grad(lambda m: slt.losses.gaussian_nll(m(x), y))(model)
        optimizer.update(model, grads)

    tracker = LLCTracker(model, (x, y), loss=slt.losses.gaussian_nll, key=jax.random.key(2), every=5, probe=x[:8], **KW)
    compiles_after_first = None
    for step in range(16):
        train_step(model, optimizer)
        tracker(step, model)
        if step == 0:
            compiles_after_first = COUNTER.count
    assert tracker.steps == [0, 5, 10, 15]
    assert COUNTER.count == compiles_after_first, "a tracker call after the first compiled something"
    assert tracker.outputs().shape == (4, 8, 1)
    assert tracker.train_loss[-1] < tracker.train_loss[0]


def test_tracker_errors(small_dln):
    with pytest.raises(ValueError, match="every"):
        LLCTracker(small_dln.loss_fn, small_dln.data, key=jax.random.key(0), every=0, **KW)
    with pytest.raises(ValueError, match="output_fn"):
        LLCTracker(small_dln.loss_fn, small_dln.data, key=jax.random.key(0), probe=small_dln.data[0], **KW)


def test_tracker_with_auto_chooses_once_and_warns_once_about_failing_records(regression):
    """step_size="auto": the tracker keeps the parameters of each record and estimates them all together,
    with one choice at the last record; a record that fails a health check (here the start, off the minimum)
    is summarized in one SamplingWarning."""
    tracker = LLCTracker(
        regression.loss_fn, regression.data, key=jax.random.key(0), step_size="auto", every=10, time_budget=60.0
    )
    params = regression.params + 1.0
    for step in range(31):
        assert tracker(step, params) is None  # deferred: nothing is estimated during training
        params = params - 0.5 * jax.grad(regression.loss_fn)(params, regression.data)
    with pytest.warns(slt.SamplingWarning, match="1 of 4 records fail a health check"):
        traj = tracker.trajectory()
    assert traj.reference_step == 30 and len({r.step_size for r in tracker.results}) == 1
    assert tracker.llc_mean.shape == (4,) and np.all(tracker.llc_mean[1:] > 0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked again: no new failing record, no new warning
        tracker.trajectory()
    with pytest.raises(ValueError, match="step_size"):
        LLCTracker(regression.loss_fn, regression.data, key=jax.random.key(0), step_size="fast")


def test_tracker_records_weight_norms_and_adams_effective_step(small_dln):
    """In an Adam loop: ‖w‖ per layer at each record; the effective step from consecutive records,
    ‖w_t − w_prev‖ / (‖w_t‖ Δs), or exactly ‖u_t‖/‖w_t‖ where the update is passed; no compilation after the
    first record (the norms are host arithmetic)."""
    p = small_dln
    params = [0.5 * jnp.ones_like(w) for w in p.params]
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def update(params, opt_state):
        grads = jax.grad(p.loss_fn)(params, p.data)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), updates, opt_state

    tracker = LLCTracker(p.loss_fn, p.data, key=jax.random.key(0), every=10, **KW)
    host, passed, compiles_after_first = {}, {}, None
    for step in range(31):
        params, updates, opt_state = update(params, opt_state)
        host[step] = [np.asarray(w, np.float64) for w in params]
        if step == 20:  # pass the update at this record only
            passed[step] = [np.asarray(u, np.float64) for u in updates]
            tracker(step, params, update=updates)
        else:
            tracker(step, params)
        if step == 0:
            compiles_after_first = COUNTER.count
    assert COUNTER.count == compiles_after_first, "a tracker call after the first compiled something"

    def norm(ws):
        return np.sqrt(sum(np.sum(w**2) for w in ws))

    np.testing.assert_allclose(tracker.weight_norm, [norm(host[s]) for s in (0, 10, 20, 30)], rtol=1e-12)
    np.testing.assert_allclose(tracker.group_norms["1"], [norm(host[s][1:]) for s in (0, 10, 20, 30)], rtol=1e-12)
    step_10 = norm([a - b for a, b in zip(host[10], host[0])]) / norm(host[10]) / 10
    step_20 = norm(passed[20]) / norm(host[20])  # one step, from the passed update
    step_30 = norm([a - b for a, b in zip(host[30], host[20])]) / norm(host[30]) / 10
    assert np.isnan(tracker.effective_step[0])
    np.testing.assert_allclose(tracker.effective_step[1:], [step_10, step_20, step_30], rtol=1e-10)
    group_0 = np.linalg.norm(host[30][0] - host[20][0]) / np.linalg.norm(host[30][0]) / 10
    np.testing.assert_allclose(tracker.group_effective_step["0"][3], group_0, rtol=1e-10)
    # Adam moves each weight by about the learning rate per step whatever the weight: Δw/w ≈ lr / |w| = 0.02 here
    assert 0.005 < step_20 < 0.03
    traj = tracker.trajectory()
    np.testing.assert_array_equal(traj.weight_norm, tracker.weight_norm)
    assert traj.step_from_update.tolist() == [False, False, True, False]
    assert traj.plot_norm() is not None
    with pytest.raises(ValueError, match="update"):
        tracker.record(40, params, update=updates[:1])
    assert tracker.steps == [0, 10, 20, 30] and len(tracker.weight_norm) == 4  # the failed record left nothing


def test_tracker_norms_of_an_nnx_model_are_per_submodule():
    x = jax.random.normal(jax.random.key(0), (100, 2))
    y = jnp.sin(x[:, :1])
    model = MLP(nnx.Rngs(0))
    # step_size="auto" defers every estimate to trajectory(): recording only keeps parameters and norms
    tracker = LLCTracker(model, (x, y), loss=slt.losses.gaussian_nll, key=jax.random.key(1), step_size="auto")
    assert tracker(0, model) is None
    assert set(tracker.group_norms) == {"layer1", "layer2"}
    kernel, bias = np.asarray(model.layer1.kernel[...]), np.asarray(model.layer1.bias[...])
    expected = np.sqrt(np.sum(kernel**2) + np.sum(bias**2))
    np.testing.assert_allclose(tracker.group_norms["layer1"], [expected], rtol=1e-6)
