"""Free energy, WBIC, multi-temperature LLC and the multiplicity fit, against values known in closed form
(SCIENCE.md §2 and §3).

Ground truth used here:
* regular quadratic loss (linear regression at its least-squares minimizer, Hessian H = XᵀX/n, eigenvalues h_i)
  with the normalized prior N(w*, γ⁻¹I): F(T) = T L* + ½ Σ log(1 + T h_i/γ) and E_t[L_n] − L* = ½ Σ h_i/(t h_i + γ);
  under full-batch SGLD with step ε the stationary E_t[L_n] − L* is ½ Σ h_i / [c_i (1 − ε c_i/4)], c_i = t h_i + γ;
* K = w⁴ without localization: E_β[nK] = 1/(4β) exactly; with γ = 1, F = −log ∫ e^{−T w⁴} N(w; 0, 1) dw by quadrature;
* a 2-layer DLN: Aoyagi's λ (slt.theory.dln).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import slt
from slt.free_energy import _wls_coefficients
from slt.models.potentials import normal_crossing_llc_exact


def hessian_eigenvalues(problem):
    x = np.asarray(problem.data[0], dtype=np.float64)
    return np.linalg.eigvalsh(x.T @ x / x.shape[0])


def sgld_excess_loss(h, nbetas, gamma, steps=None):
    """E_t[L_n] − L* for a quadratic loss: exact (steps None) or under full-batch SGLD (SCIENCE.md §1)."""
    c = np.asarray(nbetas, dtype=np.float64)[:, None] * h + gamma
    eps = 0.0 if steps is None else np.asarray(steps, dtype=np.float64)[:, None]
    return 0.5 * np.sum(h / (c * (1 - eps * c / 4)), axis=1)


# ------------------------------------------------------------------------- shared runs (one compile each)
GAMMA = 1.0


@pytest.fixture(scope="module")
def quadratic_free_energy(regression):
    """Thermodynamic integration on linear regression (d = 4, n = 1000) at β = 1, full batch.

    ε·(n h_max + γ) = 0.04 at the top temperature, and the default schedule keeps ε_k c(t_k) about that at
    every temperature: relative discretization bias ≈ ε c/4 ≈ 1% (checked exactly below)."""
    h = hessian_eigenvalues(regression)
    n = regression.num_data
    res = slt.local_free_energy(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(0),
        localization=GAMMA,
        step_size=0.04 / (n * h.max() + GAMMA),
        num_temperatures=10,
        num_chains=8,
        num_draws=3000,
        num_burnin=300,
        batch_size=n,
    )
    return res, h


@pytest.fixture(scope="module")
def quadratic_wbic(regression):
    h = hessian_eigenvalues(regression)
    n = regression.num_data
    t = n / math.log(n)
    res = slt.wbic(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(1),
        localization=GAMMA,
        step_size=0.05 / (t * h.max() + GAMMA),
        num_chains=16,
        num_draws=4000,
        num_burnin=300,
        batch_size=n,
    )
    return res, h


@pytest.fixture(scope="module")
def quartic_multitemperature():
    """K = w⁴ with no localization (γ = 0): E_β[nK] = 1/(4β) exactly at every β."""
    problem = slt.models.normal_crossing([2], num_data=1000)
    return slt.llc_multitemperature(
        problem.loss_fn,
        problem.params,
        problem.data,
        key=jax.random.key(2),
        localization=0.0,
        step_size=1e-3,
        num_chains=16,
        num_draws=8000,
        num_burnin=500,
        batch_size=1000,
    )


# -------------------------------------------------------------------------------------- ground truth
def test_quadratic_free_energy_matches_closed_form(quadratic_free_energy, regression):
    res, h = quadratic_free_energy
    n = regression.num_data
    exact = 0.5 * np.sum(np.log1p(n * h / GAMMA))  # F − n L*, the excess
    # What this grid, these steps and this sampler converge to (quadrature + SGLD bias, no MC error):
    prior_excess = 0.5 * np.sum(h) / GAMMA
    discretized = res.prior_weight * prior_excess + np.sum(
        res.weights * sgld_excess_loss(h, res.nbetas, GAMMA, res.step_sizes)
    )
    quadrature_only = res.prior_weight * prior_excess + np.sum(res.weights * sgld_excess_loss(h, res.nbetas, GAMMA))
    assert abs(quadrature_only / exact - 1) < 1e-3  # the grid and rule are not the error
    assert res.free_energy_std < 0.02 * exact, res.summary()  # the precision the tolerances rely on
    z = (res.free_energy_excess - discretized) / res.free_energy_std
    assert abs(z) < 4, (res.free_energy_excess, discretized, res.free_energy_std)
    assert abs(res.free_energy_excess - exact) < 0.05 * exact, res.summary()
    assert res.free_energy == pytest.approx(n * res.init_loss + res.free_energy_excess)
    # e(0) = E_prior[L_n] − L* = ½ tr(H)/γ, from exact prior draws
    assert abs(res.prior_excess_loss - prior_excess) < 5 * res.prior_excess_loss_std
    # per temperature, against the discretized exact values
    z_t = (
        res.mean_nloss - n * (res.init_loss + sgld_excess_loss(h, res.nbetas, GAMMA, res.step_sizes))
    ) / res.mean_nloss_std
    assert np.all(np.abs(z_t) < 4.5), z_t


def test_free_energy_bookkeeping(quadratic_free_energy, regression):
    res, h = quadratic_free_energy
    n = regression.num_data
    k = res.num_temperatures
    assert res.nbetas.shape == res.weights.shape == res.step_sizes.shape == res.mean_nloss.shape == (k,)
    assert res.nbetas[-1] == pytest.approx(n)  # default nβ = n: β = 1
    np.testing.assert_allclose(np.diff(np.log(res.nbetas)), np.log(res.nbetas[1] / res.nbetas[0]), rtol=1e-6)
    # the bottom node: t_1 = tail_tolerance / e(0), so the tail bracket is at most 0.01 nats wide
    assert res.nbetas[0] * res.prior_excess_loss == pytest.approx(0.01, rel=1e-4)
    assert 0 <= res.tail_uncertainty <= 0.005 + 1e-9
    recomposed = res.prior_weight * res.prior_excess_loss + np.sum(res.weights * res.mean_excess_loss)
    assert res.free_energy_excess == pytest.approx(recomposed)
    np.testing.assert_allclose(res.llc_per_temperature, res.nbetas * res.mean_excess_loss)
    # the step schedule: for a quadratic, ε_k (t_k h_max + γ) stays about its top-temperature value
    kappa = res.step_sizes * (res.nbetas * h.max() + GAMMA)
    assert kappa.max() / kappa.min() < 1.3, kappa
    assert res.curvature_at_center == pytest.approx(h.max(), rel=0.2)
    assert res.excess_loss_trace.shape == (k, 8, 3000) and not res.diverged.any()
    assert not res.warnings, res.warnings
    assert "free energy" in res.summary() and "trapezoid" in res.discretization


def test_wbic_matches_closed_form(quadratic_wbic, regression):
    """WBIC = E_t[nL_n] at t = n/log n = nL* + (n/2) Σ h_i/(t h_i + γ) for the quadratic model."""
    res, h = quadratic_wbic
    n = regression.num_data
    t = n / math.log(n)
    assert res.nbeta == pytest.approx(t)
    exact_excess = 0.5 * n * np.sum(h / (t * h + GAMMA))
    discretized_excess = n * sgld_excess_loss(h, [t], GAMMA, [res.step_size])[0]
    assert res.wbic_std < 0.02 * exact_excess, res.summary()
    excess = res.wbic - n * res.init_loss
    assert abs(excess - discretized_excess) < 4 * res.wbic_std, (excess, discretized_excess, res.wbic_std)
    assert abs(excess - exact_excess) < 0.05 * exact_excess, res.summary()
    assert res.wbic == pytest.approx(n * res.init_loss + res.llc * math.log(n))


def test_wbic_same_key_same_numbers(quadratic_wbic, regression):
    res, h = quadratic_wbic
    n = regression.num_data
    t = n / math.log(n)
    again = slt.wbic(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(1),
        localization=GAMMA,
        step_size=0.05 / (t * h.max() + GAMMA),
        num_chains=16,
        num_draws=4000,
        num_burnin=300,
        batch_size=n,
    )
    np.testing.assert_array_equal(again.excess_loss_trace, res.excess_loss_trace)
    assert again.wbic == res.wbic


def test_quartic_multitemperature_matches_exact(quartic_multitemperature):
    """K = w⁴, γ = 0: E_β[nK] = 1/(4β) at every temperature; slope 1/4, intercept 0."""
    res = quartic_multitemperature
    exact = 1.0 / (4 * (res.nbetas / res.num_data))
    z = (res.mean_nloss - exact) / res.mean_nloss_std
    assert np.all(np.abs(z) < 4), z
    # γ = 0 makes the exact value the closed form; the quadrature agrees
    assert normal_crossing_llc_exact(2, float(res.nbetas[0]), 0.0) == pytest.approx(0.25, rel=1e-6)
    assert res.llc_std < 0.05, res.summary()
    assert abs(res.llc - 0.25) < 4 * res.llc_std + 0.005, res.summary()
    assert abs(res.intercept) < 4 * res.intercept_std + 0.01, res.summary()
    # the default grid: 5 temperatures geometric in [t*/2, 2 t*], t* = n/log n
    t_star = 1000 / math.log(1000)
    np.testing.assert_allclose(res.nbetas[[0, -1]], [t_star / 2, 2 * t_star])
    assert res.llc == pytest.approx(np.sum(res.slope_coefficients * res.mean_nloss))


def test_dln_multitemperature_within_15_percent(key):
    """2-layer DLN (4, 3, 4), rank 1: λ = 6 (Aoyagi). One step size for all temperatures, so the leading
    discretization bias is common to all E_β[nL_n] and drops out of the slope; batch 500 keeps the
    minibatch-noise inflation ε t² σ²/(4m), which grows with t and does not drop out, at a few percent.
    Common random numbers make the temperatures equilibrate together, so the slope is less sensitive to a
    short burn-in than each single-temperature estimate."""
    problem = slt.models.deep_linear_network([4, 3, 4], 1, num_data=2000, seed=4)
    res = slt.llc_multitemperature(
        problem.loss_fn,
        problem.params,
        problem.data,
        key=key,
        localization=1.0,
        step_size=2e-4,
        num_chains=4,
        num_draws=2000,
        num_burnin=800,
        batch_size=500,
    )
    lam = float(problem.true_llc)
    assert res.llc_std < 0.06 * lam, res.summary()
    assert res.llc == pytest.approx(lam, rel=0.15), res.summary()


def test_quartic_free_energy_matches_quadrature(key):
    """Thermodynamic integration on a singular potential: K = w⁴, γ = 1, T = 1000, against 1-D quadrature.

    The curvature at w* is 0, so the default schedule would keep one step everywhere (slow at small t);
    this test passes one step per temperature from the known scaling of the typical curvature,
    12 t E_t[w²] + γ with E_t[w²] ≈ min(1/γ, 0.338 t^(-1/2))."""
    problem = slt.models.normal_crossing([2], num_data=1000)
    T, gamma, k = 1000.0, 1.0, 12
    w = np.linspace(-12, 12, 400_001)
    exact = -np.log(np.sum(np.exp(-T * w**4 - 0.5 * gamma * w**2)) * (w[1] - w[0]) / np.sqrt(2 * np.pi / gamma))
    nbetas = np.geomspace(0.01 / 3, T, k)  # e(0) = E[w⁴] = 3/γ²; the default bottom node is 0.01/e(0)
    steps = 0.05 / (12 * nbetas * np.minimum(1 / gamma, 0.338 / np.sqrt(nbetas)) + gamma)
    res = slt.local_free_energy(
        problem.loss_fn,
        problem.params,
        problem.data,
        key=key,
        localization=gamma,
        step_size=steps,
        num_temperatures=k,
        min_nbeta=nbetas[0],
        num_chains=16,
        num_draws=6000,
        num_burnin=500,
        batch_size=1000,
    )
    assert res.free_energy_std < 0.02 * exact, res.summary()
    assert abs(res.free_energy - exact) < 4 * res.free_energy_std + 0.01 * exact, (res.free_energy, exact)
    assert abs(res.free_energy - exact) < 0.05 * exact
    lam_exact = np.array([normal_crossing_llc_exact(2, t, gamma) for t in res.nbetas])
    z = (res.llc_per_temperature - lam_exact) / res.llc_per_temperature_std
    assert np.all(np.abs(z) < 4.5), z


# ------------------------------------------------------------------------------------------ multiplicity
def _expansion(n, lam, m, c, loss=0.3):
    n = np.asarray(n, dtype=np.float64)
    return n * loss + lam * np.log(n) - (m - 1) * np.log(np.log(n)) + c


def test_expansion_fit_recovers_exact_coefficients():
    n = np.geomspace(1e2, 1e8, 7).round()
    res = slt.fit_free_energy_expansion(n, _expansion(n, 3.5, 2, 1.7), np.full(n.size, 0.3))
    assert res.llc == pytest.approx(3.5, abs=1e-6)
    assert res.multiplicity == pytest.approx(2, abs=1e-5)
    assert res.constant == pytest.approx(1.7, abs=1e-5)
    assert res.resolved
    np.testing.assert_allclose(res.fitted, res.excess, atol=1e-6)
    fixed = slt.fit_free_energy_expansion(n, _expansion(n, 3.5, 2, 1.7), np.full(n.size, 0.3), llc=3.5)
    assert fixed.llc_fixed and fixed.llc_std == 0 and fixed.multiplicity == pytest.approx(2, abs=1e-6)


def test_expansion_fit_says_when_m_is_not_resolved():
    """Monte-Carlo errors of 0.05 nats over n = 100 … 1000: m is hopeless, and the result says so."""
    n = np.array([100, 200, 400, 700, 1000])
    rng = np.random.default_rng(0)
    f = _expansion(n, 2.0, 1, 0.5) + 0.05 * rng.standard_normal(n.size)
    with pytest.warns(UserWarning, match="cannot resolve the multiplicity"):
        res = slt.fit_free_energy_expansion(n, f, np.full(n.size, 0.3), np.full(n.size, 0.05))
    assert not res.resolved
    assert res.multiplicity_std > 1
    assert "log log n spans" in res.message
    assert "NOT resolved" in res.summary()
    # with λ known, the same data pin m down much better
    with pytest.warns(UserWarning):
        fixed = slt.fit_free_energy_expansion(n, f, np.full(n.size, 0.3), np.full(n.size, 0.05), llc=2.0)
    assert fixed.multiplicity_std < res.multiplicity_std / 5


def _crossing_free_energy(n, gamma=1.0):
    """F for K = x²y² with prior N(0, γ⁻¹I): ∫ e^{−n x² y²} φ(x) dx = (1 + 2ny²/γ)^{-1/2}, then 1-D in y."""
    s = np.linspace(-40.0, math.log(40.0 / math.sqrt(gamma)), 200_001)  # y = e^s
    y = np.exp(s)
    f = np.sqrt(gamma / (2 * np.pi)) * np.exp(-0.5 * gamma * y**2) / np.sqrt(1 + 2 * n * y**2 / gamma) * y
    return -math.log(2 * np.sum(f) * (s[1] - s[0]))


def test_expansion_fit_on_exact_singular_free_energies():
    """K = x²y² (λ = 1/2, m = 2): exact free energies. The plain fit is biased towards m = 1 by the O(1/log n)
    terms it leaves out (the docstring quotes these numbers); the d/log n term removes most of it."""
    n = np.geomspace(1e2, 1e6, 8)
    f = np.array([_crossing_free_energy(v) for v in n])
    plain = slt.fit_free_energy_expansion(n, f, np.zeros(n.size))
    assert plain.llc == pytest.approx(0.5, abs=0.03)
    assert 1.5 < plain.multiplicity < 1.7
    corrected = slt.fit_free_energy_expansion(n, f, np.zeros(n.size), inverse_log_term=True)
    assert corrected.multiplicity == pytest.approx(2, abs=0.15)
    assert corrected.llc == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_fit_multiplicity_on_regression_subsamples(regression, key):
    """Regular model (λ = d/2 = 2, m = 1), nested subsamples n_j = 125 … 1000, one step size for all.

    Each subsample's F and KL(p_1 ‖ prior) = F − n E_1[L_n] are known in closed form (A = n H_j, S = A + γI,
    δ = w* − ŵ_j, since w* is not the subsample's minimizer ŵ_j):
    F − n L_j(ŵ_j) = ½ log det(S/γ) + ½ γ δᵀ A S⁻¹ δ,
    KL = ½ log det(S/γ) − ½ tr(A S⁻¹) + ½ γ δᵀ A S⁻¹ δ − ½ γ² δᵀ S⁻¹ A S⁻¹ δ.
    With the default KL regressand the random δ terms are O(γ/n); m cannot be resolved over so short a range
    of n, and the result must say so, with error bars that cover λ."""
    n = regression.num_data
    h = hessian_eigenvalues(regression)
    with pytest.warns(UserWarning, match="cannot resolve"):
        res = slt.fit_multiplicity(
            regression.loss_fn,
            regression.params,
            regression.data,
            key=key,
            localization=GAMMA,
            step_size=0.04 / (n * h.max() + GAMMA),
            subsample_sizes=[125, 250, 500, 1000],
            num_temperatures=8,
            num_chains=8,
            num_draws=2000,
            num_burnin=300,
            batch_size=n,
        )
    assert not res.resolved and res.reference == "posterior"
    assert [r.num_data for r in res.results] == [125, 250, 500, 1000]
    x = np.asarray(regression.data[0], dtype=np.float64)
    y = np.asarray(regression.data[1], dtype=np.float64)
    w_star = np.asarray(regression.params, dtype=np.float64)
    for size, sub, kl in zip(res.num_data, res.results, res.excess):
        idx = res.subsample_indices[:size]
        a = x[idx].T @ x[idx]
        s = a + GAMMA * np.eye(4)
        w_hat = np.linalg.solve(a, x[idx].T @ y[idx])
        delta = w_star - w_hat
        loss_gap = 0.5 * np.mean((y[idx] - x[idx] @ w_star) ** 2) - 0.5 * np.mean((y[idx] - x[idx] @ w_hat) ** 2)
        logdet = 0.5 * np.linalg.slogdet(s / GAMMA)[1]
        a_s_delta = a @ np.linalg.solve(s, delta)
        f_excess = logdet + 0.5 * GAMMA * delta @ a_s_delta - size * loss_gap  # F − n L_j(w*)
        exact_kl = (
            logdet
            - 0.5 * np.trace(np.linalg.solve(s, a))
            + 0.5 * GAMMA * delta @ a_s_delta
            - 0.5 * GAMMA**2 * np.linalg.solve(s, delta) @ a_s_delta
        )
        assert abs(sub.free_energy_excess - f_excess) < 4 * sub.free_energy_std + 0.02 * abs(f_excess), size
        assert kl == pytest.approx(sub.kl_divergence)
        assert abs(kl - exact_kl) < 4 * sub.kl_divergence_std + 0.02 * exact_kl, (size, kl, exact_kl)
    assert abs(res.llc - 2.0) < 4 * res.llc_std, res.summary()


def test_wbic_is_the_llc_run_at_the_same_temperature(regression, key):
    """WBIC = nL_n(w*) + λ̂ log n with λ̂ exactly estimate_llc's at the same key and settings (same chains)."""
    kw = dict(key=key, step_size=1e-4, num_chains=2, num_draws=50, num_burnin=10, batch_size=100)
    res = slt.wbic(regression.loss_fn, regression.params, regression.data, localization=GAMMA, **kw)
    llc = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, localization=GAMMA, **kw)
    np.testing.assert_array_equal(res.excess_loss_trace, llc.loss_trace - llc.loss_at_center_trace)
    assert res.llc == pytest.approx(llc.llc_mean, rel=1e-9)


def test_diverged_chains_are_flagged_not_averaged(regression, key):
    kw = dict(key=key, step_size=50.0, num_chains=2, num_draws=50, num_burnin=10, batch_size=100)  # compiled above
    with pytest.warns(slt.SamplingWarning, match="diverged"):
        res = slt.wbic(regression.loss_fn, regression.params, regression.data, localization=GAMMA, **kw)
    assert res.diverged.all() and math.isnan(res.wbic)
    assert any("diverged" in w for w in res.warnings)


def test_nnx_model_form(key):
    from flax import nnx

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)).astype(np.float32)
    y = rng.standard_normal((200, 2)).astype(np.float32)
    res = slt.wbic(
        model,
        (x, y),
        loss=slt.losses.gaussian_nll,
        key=key,
        localization=1.0,
        step_size=1e-4,
        num_chains=2,
        num_draws=20,
        num_burnin=5,
        batch_size=50,
    )
    assert np.isfinite(res.wbic) and res.excess_loss_trace.shape == (2, 20)


# ---------------------------------------------------------------------------------------- small pieces
def test_two_temperature_estimate_is_the_special_case():
    x = np.array([8.0, 3.0])
    y = np.array([10.0, 4.0])
    for w in ([1.0, 1.0], [5.0, 0.1]):
        slope, intercept = _wls_coefficients(x, np.array(w))
        assert slope @ y == pytest.approx((y[0] - y[1]) / (x[0] - x[1]))
        assert intercept @ y == pytest.approx(y[0] - x[0] * (y[0] - y[1]) / (x[0] - x[1]))


def test_summaries_and_plots(quadratic_free_energy, quartic_multitemperature):
    import matplotlib.figure

    res, _ = quadratic_free_energy
    for r in (res, quartic_multitemperature):
        assert isinstance(r.plot(), matplotlib.figure.Figure)
        assert "±" in r.summary() and repr(r)
    n = np.geomspace(1e2, 1e8, 5)
    fit = slt.fit_free_energy_expansion(n, _expansion(n, 1.0, 1, 0.0), np.full(5, 0.3))
    assert isinstance(fit.plot(), matplotlib.figure.Figure)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(
    ("func", "kwargs", "match"),
    [
        ("local_free_energy", {"localization": 0.0}, "localization"),
        ("local_free_energy", {"localization": -1.0}, "localization"),
        ("local_free_energy", {"num_temperatures": 1}, "num_temperatures"),
        ("local_free_energy", {"step_size": [1e-4, 1e-4]}, "step_size"),
        ("local_free_energy", {"step_size": -1e-4}, "step_size"),
        ("local_free_energy", {"nbeta": -5.0}, "nbeta"),
        ("local_free_energy", {"min_nbeta": 2000.0}, "min_nbeta"),
        ("local_free_energy", {"tail_tolerance": 0.0}, "tail_tolerance"),
        ("local_free_energy", {"num_prior_samples": 1}, "num_prior_samples"),
        ("local_free_energy", {"num_chains": 0}, "num_chains"),
        ("wbic", {"localization": -1.0}, "localization"),
        ("wbic", {"batch_size": 10_000}, "batch_size"),
        ("llc_multitemperature", {"nbetas": [100.0]}, "nbetas"),
        ("llc_multitemperature", {"nbetas": [100.0, 100.0]}, "nbetas"),
        ("llc_multitemperature", {"spread": 1.0}, "spread"),
        ("llc_multitemperature", {"num_temperatures": 1}, "num_temperatures"),
        ("fit_multiplicity", {"subsample_sizes": [100, 5000]}, "subsample_sizes"),
        ("fit_multiplicity", {"subsample_sizes": [100, 100, 200]}, "subsample_sizes"),
    ],
)
def test_bad_arguments_name_the_argument(regression, key, func, kwargs, match):
    args = {"localization": 1.0, "step_size": 1e-4, "num_draws": 10, "num_burnin": 0}
    if func == "local_free_energy":
        args["num_temperatures"] = 4
    if func == "fit_multiplicity":
        args["subsample_sizes"] = [100, 200, 400]
    with pytest.raises(ValueError, match=match):
        getattr(slt, func)(regression.loss_fn, regression.params, regression.data, key=key, **{**args, **kwargs})


def test_expansion_fit_bad_input():
    with pytest.raises(ValueError, match="num_data"):
        slt.fit_free_energy_expansion([100, 200], [1.0, 2.0, 3.0], [0.1, 0.1])
    with pytest.raises(ValueError, match="num_data"):
        slt.fit_free_energy_expansion([100, 100, 200], [1.0, 2.0, 3.0], [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="at least 3"):
        slt.fit_free_energy_expansion([100, 200], [1.0, 2.0], [0.1, 0.1])
    with pytest.raises(ValueError, match="free_energy_std"):
        slt.fit_free_energy_expansion([100, 200, 400], [1.0, 2.0, 3.0], [0.1] * 3, [0.1, -1.0, 0.1])


def test_free_energy_family_with_auto_step_matches_closed_forms(regression, key):
    """step_size="auto" in wbic, local_free_energy and llc_multitemperature: the step is chosen at the top
    temperature (the stiffest) and scaled as 1/t below it; tolerance 5% (the calibration's bias tolerance)
    plus 3 MCSE."""
    h = hessian_eigenvalues(regression)
    n = regression.num_data
    t = n / math.log(n)
    w = slt.wbic(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=key,
        localization=GAMMA,
        step_size="auto",
        time_budget=20.0,
    )
    exact_llc = 0.5 * np.sum(t * h / (t * h + GAMMA))
    assert w.calibration is not None and w.step_size == w.calibration.step_size
    assert abs(w.llc - exact_llc) < 0.05 * exact_llc + 3 * w.llc_std, w.summary()
    m = slt.llc_multitemperature(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=key,
        localization=GAMMA,
        step_size="auto",
        time_budget=20.0,
    )
    # the top temperature's choice, scaled as 1/t below it (ε t fixed)
    np.testing.assert_allclose(m.step_sizes * m.nbetas, m.calibration.step_size * m.nbetas.max(), rtol=1e-6)
    assert m.calibration.nbeta == pytest.approx(m.nbetas.max())
    # the fit's own exact value: its linear combination of the exact E_t[n(L_n - L*)] = (n/2) Σ h/(t h + γ)
    exact_slope = np.sum(m.slope_coefficients * n * 0.5 * np.sum(h / (m.nbetas[:, None] * h + GAMMA), axis=1))
    assert abs(m.llc - exact_slope) < 0.05 * exact_slope + 3 * m.llc_std, (exact_slope, m.summary())
    f = slt.local_free_energy(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=key,
        localization=GAMMA,
        step_size="auto",
        num_temperatures=8,
        time_budget=20.0,
    )
    exact = 0.5 * np.sum(np.log1p(n * h / GAMMA))
    assert f.calibration.nbeta == pytest.approx(n) and f.step_sizes[-1] == pytest.approx(f.calibration.step_size)
    assert abs(f.free_energy_excess - exact) < 0.05 * exact + 3 * f.free_energy_std, f.summary()
