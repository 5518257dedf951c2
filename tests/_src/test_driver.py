"""The driver: chunking, chain groups and thinning change nothing but the layout; one compilation per run."""

from __future__ import annotations

import io
import sys
import time

import jax
import numpy as np
import pytest
from conftest import COMPILES, SAMPLER_CHUNK

import slt
from slt._src import driver


@pytest.fixture(scope="module")
def setup(small_dln):
    target = slt.targets.make_target(small_dln.loss_fn, small_dln.params, small_dln.data)
    per_example = slt.targets.check_loss_at_center(target, 1024)
    kw = dict(
        key=jax.random.key(3),
        example_losses_at_center=per_example,
        nbeta=100.0,
        localization=1.0,
        num_chains=3,
        num_steps=2345,
        batch_size=50,
        sampler_params={"step_size": 1e-3},
    )
    return target, kw, driver.run_chains(target, steps_per_chunk=10_000, **kw)


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("steps_per_chunk", [100, 700, None])
def test_chunking_changes_no_number_and_compiles_one_chunk(setup, steps_per_chunk):
    target, kw, whole = setup
    before = COMPILES(SAMPLER_CHUNK)
    trace = driver.run_chains(target, steps_per_chunk=steps_per_chunk, **kw)
    assert COMPILES(SAMPLER_CHUNK) - before <= 1  # 24 chunks of 100 steps: the same compiled chunk
    assert np.array_equal(trace.loss, whole.loss)
    assert np.array_equal(trace.loss_at_center, whole.loss_at_center)
    assert _leaves_equal(trace.final_state, whole.final_state)


def test_a_longer_run_reuses_the_compiled_chunk(setup):
    target, kw, _ = setup
    driver.run_chains(target, steps_per_chunk=500, **kw)
    before = COMPILES(SAMPLER_CHUNK)
    trace = driver.run_chains(target, steps_per_chunk=500, **{**kw, "num_steps": 4321})
    assert COMPILES(SAMPLER_CHUNK) == before  # run length is traced: the same chunk runs more often
    assert trace.loss.shape == (3, 4321)


def test_chain_groups_give_the_same_chains_up_to_rounding(setup):
    """Groups run the same per-chain computation at another vectorization width; XLA may then round float
    reductions differently, so chains agree to a few ulps of the loss, not bit for bit."""
    target, kw, whole = setup
    grouped = driver.run_chains(target, chain_batch_size=2, **kw)
    scale = np.abs(whole.loss).max()
    np.testing.assert_allclose(grouped.loss, whole.loss, rtol=0, atol=1e-5 * scale)


def test_cells_one_by_one_run_the_program_of_a_run_without_cells(setup):
    """A grid's cells in groups (``cell_batch_size``) give the grid's chains (up to rounding: another
    vectorization width), each cell alone compiles no program beyond a plain run's, and a cell's chains are
    those of a plain run with that cell's key and hyperparameters, bit for bit."""
    target, kw, _ = setup
    grid_kw = {k: v for k, v in kw.items() if k not in ("key", "sampler_params")}
    grid_kw.update(keys=jax.random.split(jax.random.key(5), 3), sampler_params={"step_size": [1e-3, 5e-4, 2e-4]})
    grid_kw["localization"] = np.array([1.0, 2.0, 4.0])
    # each cell its own starts, (cells, chains, ...): w* moved by a per-cell offset
    init = jax.tree_util.tree_map(
        lambda x: (
            np.asarray(x)[None, None]
            + 0.01 * np.arange(3.0).reshape((3, 1) + (1,) * np.ndim(x)) * np.ones((1, 3) + np.shape(x))
        ),
        target.position,
    )
    together = driver.run_grid(  # None: every cell in one program, whatever the backend's default
        target, steps_per_chunk=500, init_position=init, init_batched=True, cell_batch_size=None, **grid_kw
    )
    pairs = driver.run_grid(
        target, steps_per_chunk=500, init_position=init, init_batched=True, cell_batch_size=2, **grid_kw
    )
    scale = np.abs(together.loss).max()
    np.testing.assert_allclose(pairs.loss, together.loss, rtol=0, atol=1e-5 * scale)
    plain_kw = {
        **kw,
        "key": jax.random.split(jax.random.key(5), 3)[2],
        "localization": 4.0,
        "sampler_params": {"step_size": 2e-4},
    }
    plain = driver.run_chains(
        target, steps_per_chunk=500, init_position=jax.tree_util.tree_map(lambda x: x[2], init), **plain_kw
    )
    before = COMPILES(SAMPLER_CHUNK)
    alone = driver.run_grid(
        target, steps_per_chunk=500, init_position=init, init_batched=True, cell_batch_size=1, **grid_kw
    )
    assert COMPILES(SAMPLER_CHUNK) == before  # the plain run's program
    assert alone.loss.shape == together.loss.shape == (3, 3, 2345)
    assert np.array_equal(alone.loss[2], plain.loss)
    assert _leaves_equal(jax.tree_util.tree_map(lambda x: x[2], alone.final_state), plain.final_state)
    np.testing.assert_allclose(alone.loss, together.loss, rtol=0, atol=1e-5 * scale)
    assert alone.divergence_step.shape == (3, 3)


def test_a_deadline_gives_each_cell_group_its_share(setup):
    """The first group stops on its share of the time left after its first chunk; the others run as far."""
    target, kw, _ = setup
    grid_kw = {k: v for k, v in kw.items() if k not in ("key", "sampler_params")}
    grid_kw.update(keys=jax.random.split(jax.random.key(5), 3), sampler_params={"step_size": [1e-3, 5e-4, 2e-4]})
    past = time.perf_counter() - 1.0
    run = driver.run_grid(target, steps_per_chunk=300, cell_batch_size=1, deadline=past, **grid_kw)
    assert run.loss.shape == (3, 3, 300)
    whole = driver.run_grid(target, steps_per_chunk=300, cell_batch_size=1, **grid_kw)
    assert np.array_equal(run.loss, whole.loss[:, :, :300])


def test_thinning_records_every_kth_step(setup):
    target, kw, whole = setup
    run = driver.sample(target, thin=7, observables={"lac": "loss_at_center"}, **kw)
    assert np.array_equal(run.record_steps, np.arange(0, 2345, 7))
    assert np.array_equal(run.stats["loss"], whole.loss[:, ::7])
    assert np.array_equal(run.observables["lac"], whole.loss_at_center[:, ::7])


def test_divergence_step_is_exact_with_thinning(regression, key):
    target = slt.targets.make_target(regression.loss_fn, regression.params, regression.data)
    per_example = slt.targets.check_loss_at_center(target, 1024)
    common = dict(
        key=key,
        example_losses_at_center=per_example,
        nbeta=1e4,
        localization=1.0,
        num_chains=2,
        num_steps=300,
        batch_size=1000,
        sampler_params={"step_size": 5e-3},
    )
    full = driver.sample(target, **common)
    thinned = driver.sample(target, thin=10, **common)
    bad = ~np.isfinite(full.stats["loss"])
    assert bad.any(axis=1).all()  # both chains blow up at this step size
    assert np.array_equal(full.divergence_step, bad.argmax(axis=1))
    assert np.array_equal(thinned.divergence_step, full.divergence_step)


def test_progress_is_a_line_per_tenth_when_not_a_terminal(setup, monkeypatch):
    target, kw, whole = setup
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    trace = driver.run_chains(target, steps_per_chunk=100, progress=True, **kw)
    lines = err.getvalue().splitlines()
    assert "compiling" in lines[0]
    assert 2 <= len(lines) <= 13 and "\r" not in err.getvalue()
    assert "2345/2345" in lines[-1]
    assert np.array_equal(trace.loss, whole.loss)


def test_a_deadline_stops_between_chunks_with_the_full_runs_first_steps(setup, monkeypatch):
    """A deadline already past: the first chunk runs (and no other), in every chain group; its draws are the
    first steps of the full run, and the progress report ends by saying where and why it stopped."""
    target, kw, whole = setup
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    past = time.perf_counter() - 1.0
    run = driver.sample(
        target,
        steps_per_chunk=300,
        deadline=past,
        chain_batch_size=2,
        progress=True,
        observables=driver.LOSS_OBSERVABLES,
        **kw,
    )
    assert run.num_steps == 300 and run.loss.shape == (3, 300) and run.record_steps[-1] == 299
    np.testing.assert_allclose(run.loss, whole.loss[:, :300], rtol=1e-6)  # groups: equal up to rounding
    assert "stopped at its deadline after 300 of 2345 steps" in err.getvalue().splitlines()[-1]
    future = driver.run_chains(target, steps_per_chunk=300, deadline=time.perf_counter() + 1e6, **kw)
    assert np.array_equal(future.loss, whole.loss)  # a deadline not reached changes nothing
    with pytest.raises(ValueError, match="`deadline` and `store`"):
        driver.sample(target, deadline=past, store="unused", **kw)


def test_driver_rejects_bad_layout_arguments(setup):
    target, kw, _ = setup
    with pytest.raises(ValueError, match="`thin`"):
        driver.sample(target, thin=0, **kw)
    with pytest.raises(ValueError, match="`steps_per_chunk`"):
        driver.sample(target, steps_per_chunk=-5, **kw)
    with pytest.raises(ValueError, match="`chain_batch_size`"):
        driver.sample(target, chain_batch_size=0, **kw)
    with pytest.raises(ValueError, match="`cell_batch_size`"):
        driver.sample(target, batched=("nbeta",), **{**kw, "nbeta": np.array([1.0, 2.0])}, cell_batch_size=0)
