"""Shared fixtures: small problems built once per session, so that tests share compilations."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import numpy as np
import pytest

import slt


@pytest.fixture(scope="session")
def regression():
    """Linear regression, d = 4, n = 1000, at its least-squares minimizer."""
    return slt.models.linear_regression(4, num_data=1000, seed=1)


@pytest.fixture(scope="session")
def small_dln():
    """A 2-layer DLN (reduced-rank regression) small enough for fast tests."""
    return slt.models.deep_linear_network([3, 2, 3], 1, num_data=500, seed=2)


@pytest.fixture
def key():
    return jax.random.key(0)


def _ar1(rng, chains, draws, phi, start=None):
    """``(chains, draws)`` AR(1) paths x_t = φ x_{t-1} + N(0, 1), from ``start`` (default 0; the first draw is
    ``start`` itself when none is given, else one step past it); (1 + φ)/(1 − φ) draws per effective draw."""
    x = np.zeros((chains, draws))
    prev = np.zeros(chains) if start is None else np.asarray(start, float)
    for t in range(draws):
        if t or start is not None:
            prev = phi * prev + rng.standard_normal(chains)
        x[:, t] = prev
    return x


@pytest.fixture
def ar1():
    """``ar1(rng, chains, draws, phi, start=None)``: stationary-in-the-limit AR(1) chains for diagnostics tests."""
    return _ar1


class _CompileCounter:
    """Counts XLA compilations through ``jax.monitoring`` (the backend-compile event), not private caches."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.names: list[str] = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.names.append(str(kwargs.get("fun_name", "")))

    def __call__(self, name: str | None = None) -> int:
        return sum(1 for n in self.names if name is None or name in n)


COMPILES = _CompileCounter()
SAMPLER_CHUNK = "_chunk_impl"  # the driver's compiled chunk


@pytest.fixture
def compiles():
    """``compiles(name=None)``: XLA compilations so far (of functions whose name contains ``name``)."""
    return COMPILES
