"""Run stores: a run killed mid-way resumes to the uninterrupted result, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import slt
from slt._src.store import StoreMismatchError

SCRIPT = textwrap.dedent(
    """
    import sys, jax, slt
    p = slt.models.deep_linear_network([3, 2, 3], 1, num_data=500, seed=2)
    slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(5), step_size=1e-3, num_chains=2,
                     num_draws=3900, num_burnin=100, batch_size=50, thin=2, steps_per_chunk=200,
                     observables={"dist": "distance"}, store=sys.argv[1])
    """
)
SETTINGS = dict(
    step_size=1e-3,
    num_chains=2,
    num_draws=3900,
    num_burnin=100,
    batch_size=50,
    thin=2,
    steps_per_chunk=200,
    observables={"dist": "distance"},
)


@pytest.fixture(scope="module")
def problem():
    return slt.models.deep_linear_network([3, 2, 3], 1, num_data=500, seed=2)


def _estimate(p, **kw):
    return slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(5), **{**SETTINGS, **kw})


def test_a_killed_run_resumes_bitwise(problem, tmp_path):
    store = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, store], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = os.path.join(store, "progress.json")
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(progress):
            with open(progress) as f:
                done = json.load(f)["done"][0]
            if done >= 3:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(progress) as f:
        state = json.load(f)
    num_chunks = -(-(100 + 3900 * 2) // 200)
    assert 3 <= state["done"][0] < num_chunks and "complete" not in state  # killed mid-way

    resumed = _estimate(problem, store=store)
    whole = _estimate(problem)
    assert np.array_equal(resumed.llc_trace, whole.llc_trace)
    assert np.array_equal(resumed.observables["dist"], whole.observables["dist"])
    assert np.array_equal(resumed.burnin_llc_trace, whole.burnin_llc_trace)
    assert resumed.llc_mean == whole.llc_mean

    # a complete store reloads without sampling, and xarray reads it
    again = _estimate(problem, store=store)
    assert np.array_equal(again.llc_trace, whole.llc_trace)
    import xarray as xr

    ds = xr.open_zarr(store, group="observables", consolidated=False)
    assert ds["dist"].dims == ("chain", "draw")
    assert np.array_equal(ds["dist"].values[:, -3900:], whole.observables["dist"])


def test_other_arguments_against_a_store_are_an_error_naming_them(problem, tmp_path):
    store = str(tmp_path / "run")
    _estimate(problem, store=store, num_draws=100)
    with pytest.raises(StoreMismatchError, match="nbeta"):
        _estimate(problem, store=store, num_draws=100, nbeta=123.0)
    with pytest.raises(StoreMismatchError, match="num_steps"):
        _estimate(problem, store=store, num_draws=200)


def test_a_directory_that_is_not_a_store_is_refused(problem, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatchError, match="not an slt run store"):
        _estimate(problem, store=str(tmp_path), num_draws=100)
