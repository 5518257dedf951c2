"""Reference problems: the points are what their docstrings say they are."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt
from slt.models.potentials import normal_crossing_llc_exact
from slt.models.regression import quadratic_llc


def _product(params):
    out = np.eye(params[0].shape[1])
    for w in params:
        out = np.asarray(w, np.float64) @ out
    return out


@pytest.mark.parametrize(("widths", "rank"), [([3, 4, 5, 6], 1), ([5, 3, 5], 0), ([4, 6, 6, 2], 2)])
@pytest.mark.parametrize("point", ["minimum", "true"])
def test_dln_point_has_the_stated_rank_and_lambda(widths, rank, point):
    p = slt.models.deep_linear_network(widths, rank, num_data=2000, seed=5, point=point)
    assert [w.shape for w in p.params] == [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
    assert np.linalg.matrix_rank(_product(p.params), tol=1e-4) == rank
    for w in p.params:  # every layer has rank exactly r: the most singular stratum
        assert np.linalg.matrix_rank(np.asarray(w), tol=1e-5) == rank
    assert (p.true_llc, p.multiplicity) == slt.theory.dln(widths, rank)
    assert p.data[0].shape == (2000, widths[0]) and p.data[1].shape == (2000, widths[-1])


def test_dln_minimum_is_a_critical_point_and_true_point_is_not():
    pm = slt.models.deep_linear_network([6, 5, 4], 2, num_data=5000, seed=1, point="minimum")
    pt = slt.models.deep_linear_network([6, 5, 4], 2, num_data=5000, seed=1, point="true")
    gmax = lambda p: max(float(jnp.abs(g).max()) for g in jax.grad(p.loss_fn)(p.params, p.data))  # noqa: E731
    assert gmax(pm) < 1e-5 < 1e-3 < gmax(pt)
    assert float(pm.loss_fn(pm.params, pm.data)) < float(pt.loss_fn(pt.params, pt.data))
    np.testing.assert_array_equal(pm.data[0], pt.data[0])


def test_dln_is_reproducible_from_its_seed():
    a = slt.models.deep_linear_network([3, 2, 3], 1, num_data=100, seed=9)
    b = slt.models.deep_linear_network([3, 2, 3], 1, num_data=100, seed=9)
    for u, v in zip(a.params, b.params):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.data[1], b.data[1])


def test_dln_validation():
    with pytest.raises(ValueError, match="rank"):
        slt.models.deep_linear_network([3, 2, 3], 3)
    with pytest.raises(ValueError, match="point"):
        slt.models.deep_linear_network([3, 2, 3], 1, point="somewhere")
    with pytest.raises(ValueError, match="num_data"):
        slt.models.deep_linear_network([3, 2, 3], 1, num_data=0)


def test_linear_regression_point_is_the_least_squares_minimizer():
    p = slt.models.linear_regression(5, num_data=3000, seed=2)
    grad = jax.grad(p.loss_fn)(p.params, p.data)
    assert float(jnp.abs(grad).max()) < 1e-5
    assert (p.true_llc, p.multiplicity) == (slt.theory.regular(5)[0], 1)


def test_quadratic_llc_formula_limits():
    h = np.array([0.5, 1.0, 2.0])
    assert quadratic_llc(h, 1e9, 1.0) == pytest.approx(1.5, rel=1e-6)  # d/2 as t -> inf
    t, g, eps = 100.0, 1.0, 1e-3
    c = t * h + g
    assert quadratic_llc(h, t, g, eps) == pytest.approx(np.sum(t * h / (2 * c * (1 - eps * c / 4))))
    with pytest.raises(ValueError, match="unstable"):
        quadratic_llc(h, t, g, step_size=1.0)


@pytest.mark.parametrize("power", [1, 2, 3])
def test_normal_crossing_exact_value_without_localization_is_one_over_2k(power):
    # E_t[t w^{2k}] = 1/(2k) exactly for a flat prior (SCIENCE.md §2), for any t
    for t in (10.0, 1e4):
        assert normal_crossing_llc_exact(power, t, 0.0) == pytest.approx(1 / (2 * power), rel=1e-6)


def test_normal_crossing_problem():
    p = slt.models.normal_crossing([1, 2], num_data=100)
    assert (p.true_llc, p.multiplicity) == (slt.theory.normal_crossing([1, 2])[0], 1)
    w = jnp.array([0.5, 2.0])
    assert float(p.loss_fn(w, p.data[:3])) == pytest.approx(0.25 * 16.0)
    assert math.isclose(float(p.loss_fn(p.params, p.data)), 0.0)
