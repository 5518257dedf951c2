"""Shared fixtures: small problems built once per session, so that tests share compilations."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
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
