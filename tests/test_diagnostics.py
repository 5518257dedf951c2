"""ArviZ wrappers give the same, sensible answers on arviz 0.x and 1.x."""

from __future__ import annotations

import numpy as np

from slt import diagnostics


def _ar1(rng, chains, draws, phi):
    x = np.zeros((chains, draws))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + rng.standard_normal(chains)
    return x


def test_iid_draws_have_rhat_one_and_full_ess():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1000))
    assert abs(diagnostics.rhat(x) - 1) < 0.01
    assert 3000 < diagnostics.ess(x) < 5500
    assert 2500 < diagnostics.ess(x, method="tail") < 5500
    assert abs(diagnostics.mcse(x) - 1 / np.sqrt(4000)) < 0.005


def test_autocorrelated_draws_have_small_ess_and_offset_chains_large_rhat():
    rng = np.random.default_rng(1)
    x = _ar1(rng, 4, 2000, 0.95)
    # AR(1) with phi: ESS ≈ N (1 - phi) / (1 + phi) = 8000 * 0.0256 ≈ 205
    assert 100 < diagnostics.ess(x) < 400
    shifted = rng.standard_normal((4, 500)) + np.arange(4)[:, None]
    assert diagnostics.rhat(shifted) > 1.5


def test_undefined_cases_are_nan_not_errors():
    assert np.isnan(diagnostics.rhat(np.zeros((2, 2))))
    assert np.isnan(diagnostics.ess(np.full((2, 10), np.nan)))


def test_to_arviz_has_the_variables():
    data = diagnostics.to_arviz({"llc": np.zeros((2, 5)), "loss": np.ones((2, 5))}, attrs={"nbeta": 3.0})
    post = data.posterior if hasattr(data, "posterior") else data["posterior"]
    assert set(post.data_vars) >= {"llc", "loss"}
    assert post.attrs["nbeta"] == 3.0
    assert dict(post.sizes)["chain"] == 2 and dict(post.sizes)["draw"] == 5
