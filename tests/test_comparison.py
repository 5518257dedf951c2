"""Model comparison: a two-basin model with exactly known λ, losses and crossover."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COMPILES, SAMPLER_CHUNK
from scipy.special import lambertw

import slt
from slt.comparison import crossover_num_data, free_energy_asymptotic
from slt.models.regression import quadratic_llc

LOSS_A, LOSS_B = 0.0, 0.01  # basin A: all 3 coordinates quadratic (λ = 3/2); basin B: one (λ = 1/2)
CENTER_A = jnp.array([10.0, 0.0, 0.0])
CENTER_B = jnp.array([0.0, 0.0, 0.0])


def two_basin_loss(w, x):
    """Per example the lower of two quadratic wells with curvatures x_i² ∈ [0.25, 2.25]: basin A around
    (10, 0, 0) curved in every coordinate, basin B around w_0 = 0 and flat in w_1, w_2. Near either centre
    the other well is >= 12.5 higher, so L_n is exactly quadratic there."""
    well_a = LOSS_A + 0.5 * jnp.sum(x**2 * (w - CENTER_A) ** 2, axis=-1)
    well_b = LOSS_B + 0.5 * x[:, 0] ** 2 * (w[0] - CENTER_B[0]) ** 2
    return jnp.mean(jnp.minimum(well_a, well_b))


@pytest.fixture(scope="module")
def two_basins():
    x = jnp.asarray(np.random.default_rng(3).uniform(0.5, 1.5, size=(1000, 3)), jnp.float32)
    return {"A": CENTER_A, "B": CENTER_B}, x


def closed_form_crossover(delta_loss, delta_llc):
    """Larger root of n ΔL = |Δλ| log n: n = -(|Δλ|/ΔL) W_{-1}(-ΔL/|Δλ|)."""
    a = abs(delta_llc) / delta_loss
    return float(np.real(-a * lambertw(-1.0 / a, k=-1)))


SETTINGS = dict(step_size=1e-3, num_chains=4, num_draws=2000, num_burnin=500, localization=1.0)


def test_estimated_llcs_match_the_exact_values_and_the_crossover_solves_the_equation(two_basins, key):
    points, x = two_basins
    n = x.shape[0]
    before = COMPILES(SAMPLER_CHUNK)
    comp = slt.compare_models(two_basin_loss, points, x, key=key, batch_size=n, **SETTINGS)
    assert COMPILES(SAMPLER_CHUNK) - before <= 1  # both points share one compilation
    t = n / math.log(n)
    h2 = np.mean(np.asarray(x, np.float64) ** 2, axis=0)
    exact = {
        "A": quadratic_llc(h2, t, 1.0, SETTINGS["step_size"]),
        "B": quadratic_llc(h2[:1], t, 1.0, SETTINGS["step_size"]),
    }
    for k, name in enumerate(comp.names):
        res = comp.llc_results[name]
        assert res.rhat < 1.05
        assert abs(comp.llcs[k] - exact[name]) < 4.0 * comp.llc_errors[k], (name, comp.llcs[k], exact[name])
    np.testing.assert_allclose(comp.losses, [LOSS_A, LOSS_B], atol=1e-7)
    (cross,) = comp.crossovers
    assert (cross.before, cross.after) == ("B", "A")  # higher loss, smaller λ first
    expected = closed_form_crossover(LOSS_B - LOSS_A, comp.llcs[1] - comp.llcs[0])
    assert cross.num_data == pytest.approx(expected, rel=1e-6)
    assert cross.interval[0] < cross.num_data < cross.interval[1]
    assert comp.preferred(0.5 * cross.num_data) == "B" and comp.preferred(2.0 * cross.num_data) == "A"
    assert [(t.before, t.after) for t in comp.transitions] == [("B", "A")]
    assert "B → A" in comp.summary()


def test_given_exact_llcs_give_the_closed_form_crossover(two_basins):
    points, x = two_basins
    comp = slt.compare_models(two_basin_loss, points, x, llcs={"A": 1.5, "B": 0.5})
    assert all(r is None for r in comp.llc_results.values())
    (cross,) = comp.crossovers
    delta_loss = comp.losses[1] - comp.losses[0]  # 0.01 up to float32 rounding
    assert delta_loss == pytest.approx(LOSS_B - LOSS_A, rel=1e-6)
    n_c = closed_form_crossover(delta_loss, 1.0)
    assert cross.num_data == pytest.approx(n_c, rel=1e-9)
    assert cross.num_data / math.log(cross.num_data) == pytest.approx(1.0 / delta_loss, rel=1e-9)  # ≈ 100
    assert cross.num_data_std == 0.0
    # the log odds change sign there, and F is the stated formula on the grid
    assert comp.log_odds("A", "B", 0.9 * n_c) < 0 < comp.log_odds("A", "B", 1.1 * n_c)
    grid = comp.num_data_grid
    np.testing.assert_allclose(comp.free_energies[1], comp.losses[1] * grid + 0.5 * np.log(grid), rtol=1e-12)


def test_crossover_uncertainty_is_the_delta_method_of_the_lambda_errors(two_basins):
    points, x = two_basins
    sa, sb = 0.05, 0.02
    comp = slt.compare_models(two_basin_loss, points, x, llcs={"A": (1.5, sa), "B": (0.5, sb)})
    (cross,) = comp.crossovers
    dl = comp.losses[1] - comp.losses[0]
    sigma, h = math.hypot(sa, sb), 1e-5
    slope = (crossover_num_data(dl, -1.0 + h) - crossover_num_data(dl, -1.0 - h)) / (2 * h)
    assert cross.num_data_std == pytest.approx(abs(slope) * sigma, rel=1e-3)
    lo, hi = cross.interval
    assert lo == pytest.approx(crossover_num_data(dl, -1.0 + 1.959963984540054 * sigma), rel=1e-9)
    assert hi == pytest.approx(crossover_num_data(dl, -1.0 - 1.959963984540054 * sigma), rel=1e-9)
    assert lo < cross.num_data < hi
    np.testing.assert_allclose(comp.free_energy_stds[0], sa * np.log(comp.num_data_grid))


def test_multiplicity_enters_as_minus_m_minus_one_log_log_n(two_basins):
    points, x = two_basins
    comp = slt.compare_models(two_basin_loss, points, x, llcs={"A": 1.5, "B": 0.5}, multiplicities={"A": 3})
    n = np.array([10.0, 1e3, 1e6])
    np.testing.assert_allclose(comp.free_energy("A", n), 1.5 * np.log(n) - 2 * np.log(np.log(n)), atol=1e-9)
    np.testing.assert_allclose(free_energy_asymptotic(n, 0.01, 0.5), 0.01 * n + 0.5 * np.log(n))
    (cross,) = comp.crossovers
    n_c, dl = cross.num_data, comp.losses[1] - comp.losses[0]
    assert abs(dl * n_c - math.log(n_c) + 2 * math.log(math.log(n_c))) < 1e-9 * n_c
    assert cross.num_data < closed_form_crossover(dl, 1.0)  # -(m-1) log log n favours A: an earlier crossover


def test_no_crossover_when_the_lower_loss_point_is_also_simpler():
    assert math.isnan(crossover_num_data(0.01, 0.5))  # higher loss and higher λ: never preferred
    assert math.isnan(crossover_num_data(1.0, -2.0))  # |Δλ|/ΔL = 2 < e: g(n) > 0 for all n
    assert math.isfinite(crossover_num_data(1.0, -3.0))


def test_plot_returns_a_figure(two_basins):
    points, x = two_basins
    comp = slt.compare_models(two_basin_loss, points, x, llcs={"A": (1.5, 0.05), "B": 0.5})
    fig = comp.plot()
    assert len(fig.axes) == 2
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_errors_name_the_argument(two_basins, key):
    points, x = two_basins
    with pytest.raises(ValueError, match="`points`"):
        slt.compare_models(two_basin_loss, {"A": CENTER_A}, x, llcs={"A": 1.5})
    with pytest.raises(ValueError, match="`points`"):
        slt.compare_models(two_basin_loss, {"A": CENTER_A, "B": jnp.zeros(4)}, x, llcs={"A": 1.5, "B": 2.0})
    with pytest.raises(ValueError, match="`points`"):
        slt.compare_models(two_basin_loss, CENTER_A, x, key=key, step_size=1e-3)
    with pytest.raises(ValueError, match="`key`"):
        slt.compare_models(two_basin_loss, points, x, step_size=1e-3)
    with pytest.raises(ValueError, match="`step_size`"):
        slt.compare_models(two_basin_loss, points, x, key=key)
    with pytest.raises(ValueError, match="`llcs`"):
        slt.compare_models(two_basin_loss, points, x, llcs={"C": 1.0})
    with pytest.raises(ValueError, match="`llcs"):
        slt.compare_models(two_basin_loss, points, x, llcs={"A": -1.0, "B": 0.5})
    with pytest.raises(ValueError, match="`multiplicities"):
        slt.compare_models(two_basin_loss, points, x, llcs={"A": 1.5, "B": 0.5}, multiplicities={"A": 0})
    with pytest.raises(ValueError, match="`num_data_grid`"):
        slt.compare_models(two_basin_loss, points, x, llcs={"A": 1.5, "B": 0.5}, num_data_grid=[1.0, 10.0])
    with pytest.raises(ValueError, match="`num_data_grid`"):
        slt.compare_models(
            two_basin_loss, points, x, llcs={"A": 1.5, "B": 0.5}, multiplicities={"A": 2}, num_data_grid=[2.0, 10.0]
        )
    with pytest.raises(ValueError, match="delta_loss"):
        crossover_num_data(0.0, -1.0)
    comp = slt.compare_models(two_basin_loss, points, x, llcs={"A": 1.5, "B": 0.5})
    with pytest.raises(ValueError, match="unknown point"):
        comp.free_energy("C", 10.0)
