"""calibrate and step_size="auto": the grid runs in one compile, the rule's classes are right on cells whose
fate is known, and the chosen step gives λ̂ within tolerance of values known in closed form."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import COMPILES, SAMPLER_CHUNK

import slt
from slt._src import driver
from slt.models.regression import quadratic_llc

CAL = dict(num_draws=750, num_step_sizes=8, num_chains=4, batch_size=100)


def hessian_eigenvalues(problem):
    x = np.asarray(problem.data[0], dtype=np.float64)
    return np.linalg.eigvalsh(x.T @ x / x.shape[0])


@pytest.fixture(scope="module")
def calibrated(regression):
    before = COMPILES(SAMPLER_CHUNK)
    cal = slt.calibrate(regression.loss_fn, regression.params, regression.data, key=jax.random.key(3), **CAL)
    return cal, COMPILES(SAMPLER_CHUNK) - before


def test_grid_is_one_compilation_and_capped_by_curvature(calibrated, regression):
    cal, compiles = calibrated
    assert compiles <= 1
    h = hessian_eigenvalues(regression)
    t = cal.nbeta
    assert cal.hessian_top == pytest.approx(h.max(), rel=1e-2)
    assert cal.step_sizes[0] == pytest.approx(2 / (t * cal.hessian_top + cal.localization), rel=1e-6)
    np.testing.assert_allclose(cal.step_sizes[1:] / cal.step_sizes[:-1], 0.5)
    assert len(cal.table().splitlines()) == 1 + len(cal.step_sizes)


def minibatch_sgld_llc(problem, t, gamma, eps, m):
    """Stationary E[t(L - L*)] of minibatch SGLD (indices with replacement) on least squares, exact in the
    discretization and first order in the minibatch noise: per Hessian eigendirection i, the variance is
    (1 + ε t² v_i / (4m)) / (c_i (1 - ε c_i / 4)) with c_i = t h_i + γ and v_i the per-example gradient
    variance along it (module docstring of slt.calibration)."""
    x = np.asarray(problem.data[0], np.float64)
    r = np.asarray(problem.data[1], np.float64) - x @ np.asarray(problem.params, np.float64)
    h, u = np.linalg.eigh(x.T @ x / x.shape[0])
    v = np.einsum("ji,jk,ki->i", u, np.cov((-r[:, None] * x).T, bias=True), u)
    c = t * h + gamma
    return float(np.sum(t * h / 2 * (1 + eps * t**2 * v / (4 * m)) / (c * (1 - eps * c / 4))))


def test_minibatch_sgld_formula_matches_a_long_run(regression):
    """The formula the calibration tests rely on, checked once against a long run at a step where the
    minibatch term is visible (+4%) on top of the discretization term (+3%)."""
    t = slt.default_nbeta(1000)
    res = slt.estimate_llc(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(3),
        step_size=7.9e-4,
        num_draws=20_000,
        num_burnin=2000,
        batch_size=100,
    )
    exact = minibatch_sgld_llc(regression, t, 1.0, 7.9e-4, 100)
    assert exact > 1.06 * minibatch_sgld_llc(regression, t, 1.0, 0.0, 100)
    assert abs(res.llc_mean - exact) < 4 * res.llc_mcse, (res.llc_mean, exact, res.llc_mcse)


def test_chosen_step_has_small_bias_and_is_not_needlessly_small(calibrated, regression):
    """At the chosen ε the exact stationary λ̂ is within two grid steps' worth of the tolerance of its ε → 0
    value (the fitted slope is noisy; one halving of the grid doubles the bias), and the rule did not
    retreat to a step far smaller than needed. The largest cell (ε c_max = 2) is far off or unstable."""
    cal, _ = calibrated
    assert cal.stable[cal.chosen] and cal.equilibrated[cal.chosen]
    assert cal.predicted_bias[cal.chosen] <= cal.bias_tolerance
    limit = minibatch_sgld_llc(regression, cal.nbeta, cal.localization, 0.0, cal.batch_size)
    at_chosen = minibatch_sgld_llc(regression, cal.nbeta, cal.localization, cal.step_size, cal.batch_size)
    bias = at_chosen / limit - 1
    assert cal.bias_tolerance / 8 <= bias <= 2 * cal.bias_tolerance, (bias, cal.summary())
    assert abs(cal.llc_mean[0] / limit - 1) > 0.2 or not cal.stable[0], cal.summary()


def test_sweep_over_nbeta_and_localization_is_one_compilation_and_each_pair_obeys_the_rule(regression):
    """calibrate(nbeta=[...], localization=[...]): every ε × nβ × γ cell in one program, each pair's grid capped by
    its own 2/(nβ h_max + γ), and each pair's chosen ε has the small exact bias of the single-pair test.
    (This test found that a 10% d/2 margin left the (600, 1) pair three admissible cells and a chosen ε with
    10.1% exact bias; see D_HALF_MARGIN.)"""
    before = COMPILES(SAMPLER_CHUNK)
    sweep = slt.calibrate(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(3),
        nbeta=[150.0, 600.0],
        localization=[1.0, 300.0],
        **CAL,
    )
    assert COMPILES(SAMPLER_CHUNK) - before <= 1
    assert isinstance(sweep, slt.CalibrationSweep)
    assert sweep.pairs == [(150.0, 1.0), (150.0, 300.0), (600.0, 1.0), (600.0, 300.0)]
    h_max = hessian_eigenvalues(regression).max()
    for (t, gamma), cal in zip(sweep.pairs, sweep.results):
        assert cal.nbeta == t and cal.localization == gamma
        assert cal.step_sizes[0] == pytest.approx(2 / (t * h_max + gamma), rel=1e-2)
        limit = minibatch_sgld_llc(regression, t, gamma, 0.0, cal.batch_size)
        bias = minibatch_sgld_llc(regression, t, gamma, cal.step_size, cal.batch_size) / limit - 1
        assert cal.bias_tolerance / 8 <= bias <= 2 * cal.bias_tolerance, (t, gamma, bias, cal.summary())
    assert sweep[600.0, 300.0] is sweep.results[3]
    np.testing.assert_array_equal(sweep.step_sizes, [r.step_size for r in sweep.results])
    assert len(sweep.table().splitlines()) == 5 and "calibration sweep" in sweep.summary()
    fig = sweep.plot()
    assert len(fig.axes) == 1
    with pytest.raises(KeyError):
        sweep[1.0, 1.0]


def test_acceptance_is_recorded_for_sgld_and_falls_with_the_step(calibrated):
    cal, _ = calibrated
    acc = cal.acceptance
    assert np.all((acc >= 0) & (acc <= 1))
    assert acc[-1] > acc[0]


def test_unstable_cells_are_flagged(regression):
    """Steps beyond the stability limit ε c_max = 4 diverge and are never chosen."""
    h = hessian_eigenvalues(regression)
    t = slt.default_nbeta(regression.data[0].shape[0])
    limit = 4 / (t * h.max() + 1.0)
    grid = [limit * 8, limit * 4, limit / 20, limit / 40, limit / 80]
    cal = slt.calibrate(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(0),
        step_sizes=grid,
        num_draws=300,
        num_chains=2,
        batch_size=100,
    )
    assert cal.num_diverged[0] == 2 and cal.num_diverged[1] == 2
    assert not cal.stable[:2].any()
    assert cal.step_size <= limit / 20
    fig = cal.plot()
    assert len(fig.axes) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step_sizes": [1e-4, 1e-5]}, "step_sizes"),
        ({"step_sizes": [1e-4, -1e-5, 1e-6]}, "step_sizes"),
        ({"bias_tolerance": 0.0}, "bias_tolerance"),
        ({"num_draws": 100, "num_burnin": -1}, "num_burnin"),
        ({"num_draws": 11}, "num_draws"),
        ({"num_step_sizes": 2}, "num_step_sizes"),
    ],
)
def test_bad_arguments_name_themselves(regression, kwargs, match):
    with pytest.raises(ValueError, match=match):
        slt.calibrate(regression.loss_fn, regression.params, regression.data, key=jax.random.key(0), **kwargs)


def _auto_llc(regression, **settings):
    """``estimate_llc(step_size="auto")`` on the regression at the settings the auto tests share."""
    return slt.estimate_llc(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(1),
        step_size="auto",
        batch_size=100,
        time_budget=60.0,
        **settings,
    )


@pytest.fixture(scope="module")
def auto_run(regression):
    return _auto_llc(regression)


def test_auto_step_size_records_the_calibration_and_is_accurate(regression, auto_run):
    res = auto_run
    exact = quadratic_llc(hessian_eigenvalues(regression), res.nbeta, res.localization)
    assert res.calibration is not None
    assert res.step_size == res.calibration.step_size
    assert res.num_draws >= 2000 and res.burnin_llc_trace.shape[1] >= res.calibration.num_burnin
    assert res.llc_mean == pytest.approx(exact, rel=0.05), res.summary()


def test_auto_warms_up_at_a_larger_step_then_recalibrates_from_the_warm_chains(auto_run):
    """Stages 2-4 of step_size="auto": a warm-up at ε_w (a first-grid cell above the first choice, at most 16×
    it), a second grid halving from ε_w whose cells start from the warm chains and whose choice may not exceed
    the first (when that was made by the rule), and a run that starts where the chosen cell's chains ended,
    not at w*."""
    res = auto_run
    cal, first = res.calibration, res.calibration.first
    assert first is not None and first.started_from == "w*" and cal.started_from == "warm-up"
    assert first.step_size < cal.warmup_step_size <= 16 * first.step_size
    assert cal.warmup_step_size in first.step_sizes[first.stable]
    assert cal.num_warmup >= 2000
    np.testing.assert_allclose(cal.step_sizes, cal.warmup_step_size * 0.5 ** np.arange(len(cal.step_sizes)))
    assert res.step_size == cal.step_size
    assert cal.step_size <= first.step_size or not first.by_rule
    assert "warmed up for" in cal.summary() and "first calibration" in cal.summary()
    # A run from w* records λ̂ = 0 exactly at its first step (w_0 = w*, the same minibatch); this one does not.
    assert np.all(res.burnin_llc_trace[:, 0] != 0)
    assert cal.chosen_position is not None and jax.tree_util.tree_leaves(cal.chosen_position)[0].shape[0] == 4


def test_auto_bias_tolerance_sets_the_rule_of_both_grids(regression, auto_run):
    """``bias_tolerance`` of ``step_size="auto"`` is the calibrations' rule: a tighter one chooses a step no
    larger, and the estimate's error against the closed form is within it plus the Monte-Carlo error."""
    res = _auto_llc(regression, bias_tolerance=0.01)
    assert res.calibration.bias_tolerance == 0.01 and res.calibration.first.bias_tolerance == 0.01
    assert auto_run.calibration.bias_tolerance == slt.calibration.BIAS_TOLERANCE == 0.03
    assert res.step_size <= auto_run.step_size
    exact = quadratic_llc(hessian_eigenvalues(regression), res.nbeta, res.localization)
    assert abs(res.llc_mean / exact - 1) < 0.01 + 3 * res.llc_mcse / exact, res.summary()
    with pytest.raises(ValueError, match="bias_tolerance"):
        _auto_llc(regression, bias_tolerance=0.0)


def test_auto_warms_up_at_an_unresolved_bottom_whatever_its_predicted_bias(regression, auto_run):
    """A first grid that met the bias rule nowhere down to its bottom keeps its bottom cell only after a warm-up
    there and a second grid (bounded by the first's fit) have checked it, even where that cell's predicted bias
    is above WARMUP_BIAS (the line through much larger cells overstates it); before, no warm-up ran and the
    unchecked bottom cell was the run's step (a grokking MLP: +12% against smaller steps)."""
    import dataclasses

    from slt._src.auto import WARMUP_BIAS, bottom_unresolved, warm_up
    from slt.targets import check_loss_at_center, make_target

    first = auto_run.calibration.first
    bottom = int(np.argmin(first.step_sizes))
    unresolved = dataclasses.replace(
        first,
        chosen=bottom,
        step_size=float(first.step_sizes[bottom]),
        by_rule=False,
        predicted_bias=np.full(first.step_sizes.shape, 2 * WARMUP_BIAS),
        stable=np.ones(first.step_sizes.shape, bool),
    )
    assert bottom_unresolved(unresolved)
    target = make_target(regression.loss_fn, regression.params, regression.data)
    warm = warm_up(
        target,
        unresolved,
        jax.random.key(2),
        max_steps=2000,
        num_chains=2,
        progress=False,
        example_losses_at_center=check_loss_at_center(target, 1024),
        nbeta=auto_run.nbeta,
        localization=auto_run.localization,
        batch_size=100,
    )
    assert warm is not None and warm[0] == pytest.approx(unresolved.step_size)


def test_a_soft_bound_caps_only_a_grid_without_bias_information(regression):
    """``soft_bound``: an earlier grid's bound that is itself in doubt does not cap a grid whose own fit is
    informative (it chooses by its rule above the bound); a hard bound does."""
    from slt.calibration import _calibrate_target
    from slt.targets import make_target

    target = make_target(regression.loss_fn, regression.params, regression.data)
    grid = dict(key=jax.random.key(0), num_draws=500, num_burnin=500, num_step_sizes=8)
    free = _calibrate_target(target, **grid)
    bottom = int(np.argmin(free.step_sizes))
    assert free.by_rule and free.chosen != bottom  # an informative fit, a choice above the grid's bottom
    bound = float(free.step_sizes[bottom]) * 1.01  # only the bottom cell is under it
    hard = _calibrate_target(target, max_step_size=bound, **grid)
    soft = _calibrate_target(target, max_step_size=bound, soft_bound=True, **grid)
    assert hard.step_size <= bound < free.step_size
    assert soft.step_size == free.step_size


def test_a_run_starts_from_init_position(regression):
    """run_chains(init_position=...): the first recorded (full-batch) loss is the loss at the given positions."""
    from slt._src.driver import run_chains
    from slt.targets import check_loss_at_center, make_target

    target = make_target(regression.loss_fn, regression.params, regression.data)
    per_example = check_loss_at_center(target, 1024)
    starts = regression.params[None] + 0.1 * jax.random.normal(jax.random.key(0), (2,) + regression.params.shape)
    trace = run_chains(
        target,
        key=jax.random.key(1),
        example_losses_at_center=per_example,
        nbeta=100.0,
        localization=1.0,
        num_chains=2,
        num_steps=3,
        batch_size=target.num_data,
        sampler_params={"step_size": 1e-4},
        init_position=starts,
    )
    expected = [float(regression.loss_fn(w, regression.data)) for w in starts]
    np.testing.assert_allclose(trace.loss[:, 0], expected, rtol=1e-5)
    assert np.all(trace.loss[:, 0] > per_example.mean())


def test_auto_rejects_other_strings(regression):
    with pytest.raises(ValueError, match="step_size"):
        slt.estimate_llc(
            regression.loss_fn, regression.params, regression.data, key=jax.random.key(1), step_size="fast"
        )


def test_preconditioned_sampler_caps_the_grid_by_its_step_gain(regression):
    """RMSprop-SGLD's effective step reaches ε/δ: its spec's ``step_gain`` divides the curvature cap, whether
    the sampler is named or passed as the factory itself; it has no acceptance variant (one gradient per step)."""
    kwargs = dict(key=jax.random.key(0), num_draws=20, num_step_sizes=3, num_chains=2, batch_size=100)
    by_name = slt.calibrate(
        regression.loss_fn,
        regression.params,
        regression.data,
        sampler="rmsprop_sgld",
        sampler_params={"eps": 0.05},
        **kwargs,
    )
    h = by_name.hessian_top
    assert by_name.curvature_cap == pytest.approx(0.05 * 2 / (by_name.nbeta * h + by_name.localization), rel=1e-6)
    assert by_name.gradients_per_step == 1 and np.isnan(by_name.acceptance).all()
    by_factory = slt.calibrate(
        regression.loss_fn,
        regression.params,
        regression.data,
        sampler=slt.samplers.rmsprop_sgld,
        sampler_params={"eps": 0.05},
        **kwargs,
    )
    assert by_factory.curvature_cap == by_name.curvature_cap


def test_sgld_calibration_records_acceptance_through_its_variant(calibrated):
    cal, _ = calibrated
    assert cal.gradients_per_step == 2


def test_sgnht_cells_whose_thermostat_fights_minibatch_heat_are_unstable(regression):
    """SGNHT's calibration_check: a cell whose mean thermostat exceeds 1.2 × diffusion (minibatch heat over 20%
    of the injected noise) counts as unstable; the per-cell means of the sampler's statistics are recorded."""
    regime_check = slt.samplers.sampler_spec("sgnht").calibration_check
    check = regime_check({"thermostat": np.array([0.1, 0.119, 0.121, 0.5, np.nan])}, {"diffusion": 0.1})
    np.testing.assert_array_equal(check, [True, True, False, False, True])
    cal = slt.calibrate(
        regression.loss_fn,
        regression.params,
        regression.data,
        key=jax.random.key(0),
        sampler="sgnht",
        step_sizes=np.geomspace(1e-2, 1e-5, 8),
        num_draws=750,
        num_chains=2,
        batch_size=50,
    )
    xi = cal.sampler_stats["thermostat"]
    assert xi.shape == cal.step_sizes.shape
    hot = xi > 1.2 * 0.1
    assert hot.any() and not hot.all()  # batch 50: the large cells are heated, the small ones not
    assert not cal.stable[hot].any()
    assert not hot[cal.chosen]


# ------------------------------------------------------------------ awkward points, cost of step_size="auto"
def _power_loss(params, batch):
    """The PyTorch peer's normal-crossing loss f = x · w1^1.0 · w2^2.0, written with float powers: JAX's second
    derivative of w ** 1.0 at w = 0 is 0 · inf = NaN, so the Hessian-vector product at w* = 0 is not finite."""
    x, y = batch
    return 0.5 * jax.numpy.mean((y - x * params["w1"] ** 1.0 * params["w2"] ** 2.0) ** 2)


def _power_problem():
    x = 2.0 * jax.random.normal(jax.random.key(0), (1000,))
    y = 0.25 * jax.random.normal(jax.random.key(1), (1000,))
    return {"w1": jax.numpy.zeros(()), "w2": jax.numpy.zeros(())}, (x, y)


def test_curvature_at_a_nan_hessian_point_is_probed_nearby():
    from slt._src.curvature import top_hessian_eigenvalue
    from slt.targets import make_target

    params, data = _power_problem()
    target = make_target(_power_loss, params, data)
    flat = jax.flatten_util.ravel_pytree(params)[0]
    hv = jax.jvp(jax.grad(lambda v: _power_loss({"w1": v[0], "w2": v[1]}, data)), (flat,), (jax.numpy.ones(2),))[1]
    assert not np.isfinite(np.asarray(hv)).all()  # the premise: NaN exactly at w*
    h = top_hessian_eigenvalue(target, key=jax.random.key(0))
    assert np.isfinite(h) and h >= 0
    cal = slt.calibrate(
        _power_loss,
        params,
        data,
        key=jax.random.key(0),
        localization=10.0,
        num_draws=200,
        num_step_sizes=6,  # the probed cap's first 3 cells diverge, the 4th (0.0246) is marginal: see below
        num_chains=2,
    )
    assert np.isfinite(cal.step_sizes).all() and np.isfinite(cal.llc_mean[cal.chosen])
    assert cal.step_size < 0.02  # at 0.0246 eight 21,000-step chains all diverged within 3,100 steps


def test_curvature_that_is_nan_everywhere_names_the_leaf():
    @jax.custom_jvp
    def broken(w):
        return w**2

    @broken.defjvp
    def _(primals, tangents):
        (w,), (t,) = primals, tangents
        return w**2, jax.numpy.nan * t

    def loss(params, batch):
        return jax.numpy.mean((batch - params["ok"]) ** 2) + broken(params["bad"])

    params = {"ok": jax.numpy.zeros(()), "bad": jax.numpy.zeros(())}
    with pytest.raises(ValueError, match=r"gradient is non-finite in leaf \['bad'\]"):
        slt.calibrate(loss, params, jax.numpy.ones(100), key=jax.random.key(0), num_draws=100, num_step_sizes=3)


def test_auto_shares_compiled_programs_and_time_budget_bounds_the_whole_call(regression):
    """The calibration grids, the warm-up and the run share one compiled program on CPU (cells one by one, the
    same chunk length, traced run length); elsewhere the grids' cells run together in a second one. The budget
    covers the calibrations."""
    kwargs = dict(key=jax.random.key(7), step_size="auto", batch_size=100, num_chains=3)  # 3: a shape of its own
    before = COMPILES(SAMPLER_CHUNK)
    res = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, time_budget=60.0, **kwargs)
    assert res.auto.num_warmup > 0 and res.calibration.first is not None
    assert COMPILES(SAMPLER_CHUNK) - before == (1 if driver.default_cell_batch_size() == 1 else 2)
    auto = res.auto
    assert auto.calibration_seconds > 0 and auto.warmup_seconds > 0
    assert res.wall_time >= auto.calibration_seconds + auto.warmup_seconds
    assert "warm-up" in auto.describe()
    # A budget below what the first calibration takes: no warm-up, the minimum run, and a note that says so.
    short = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, time_budget=0.01, **kwargs)
    assert short.auto.num_warmup == 0 and short.num_draws == 2000
    # its grid stopped after one chunk of 100 steps, split as the whole grid's 1,000 would have been
    first = short.calibration
    assert (first.num_burnin, first.num_draws) == (50, 50), first.note
    assert first.note.startswith("time_budget stopped the grid after 100 of 1000 steps per cell")
    assert any("time_budget" in n for n in short.notes), (short.notes, short.auto.describe())
    assert any("time_budget" in w for w in short.warnings)


def test_a_sweep_pair_with_no_stable_cell_is_reported_not_fatal(regression):
    """The same fixed grid is stable at γ = 1 and far beyond the stability limit ε(nβh + γ) = 4 at γ = 10⁵: that
    pair fails and says why, the other is calibrated as usual; a single such pair raises with the same reason."""
    h = hessian_eigenvalues(regression)
    t = slt.default_nbeta(regression.num_data)
    limit = 4 / (t * h.max() + 1.0)
    grid = [limit / 20, limit / 40, limit / 80]
    kwargs = dict(key=jax.random.key(0), num_draws=200, num_chains=2, batch_size=100, step_sizes=grid)
    sweep = slt.calibrate(regression.loss_fn, regression.params, regression.data, localization=[1.0, 1e5], **kwargs)
    assert list(sweep.failed) == [(t, 1e5)], sweep.table()
    why = sweep.failed[(t, 1e5)]
    assert "no stable step size" in why and "3 had diverging chains" in why, why
    assert np.isnan(sweep[t, 1e5].step_size) and sweep[t, 1e5].chosen == -1
    assert np.isfinite(sweep[t, 1.0].step_size) and sweep[t, 1.0].chosen >= 0
    assert "no stable cell" in sweep.table() and sweep.plot() is not None
    with pytest.raises(ValueError, match="no stable step size.*diverging"):
        slt.calibrate(regression.loss_fn, regression.params, regression.data, localization=1e5, **kwargs)


def test_an_auto_run_that_falls_short_is_continued_from_its_final_state(regression, monkeypatch):
    """Draws sized by "auto" from a short cell's mixing can fall short; the run then continues from the chains'
    final state (the same compiled chunk program) until its MCSE meets precision × |λ̂|. Forced here by shrinking
    the chosen draws to the minimum, 2000: the continued run begins with exactly the short run's records and ends
    near the closed form with a smaller MCSE."""
    import dataclasses

    import slt._src.auto as auto_module

    real = auto_module.auto_settings
    monkeypatch.setattr(
        auto_module, "auto_settings", lambda *a, **k: dataclasses.replace(real(*a, **k), num_draws=2000)
    )
    kwargs = dict(key=jax.random.key(3), step_size="auto", batch_size=100, num_chains=5, time_budget=60.0)
    before = COMPILES(SAMPLER_CHUNK)  # 5 chains: a shape of its own
    res = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, **kwargs)
    # grids (their own program unless cells run one by one), warm-up = run = continuations
    assert COMPILES(SAMPLER_CHUNK) - before == (1 if driver.default_cell_batch_size() == 1 else 2)
    assert not any("still falls short" in note for note in res.notes), res.notes
    monkeypatch.setattr(slt.llc, "EXTENSIONS", 0)
    with pytest.warns(slt.SamplingWarning, match="still falls short after 0 continuation.*more draws per chain"):
        short = slt.estimate_llc(regression.loss_fn, regression.params, regression.data, **kwargs)
    assert short.num_draws == 2000 and not short.extensions
    assert any("raise time_budget" in note for note in short.warnings)
    assert res.extensions and res.num_draws > 2000, res.summary()
    assert "continued by" in res.summary()
    kept = res.llc_trace.shape[1] - short.llc_trace.shape[1]
    if res.burnin_llc_trace.shape[1] == short.burnin_llc_trace.shape[1]:  # no kept draw joined the burn-in
        np.testing.assert_array_equal(res.llc_trace[:, :2000], short.llc_trace)
    assert kept > 0 and res.llc_mcse < short.llc_mcse
    exact = quadratic_llc(hessian_eigenvalues(regression), res.nbeta, res.localization)
    assert abs(res.llc_mean - exact) < 4 * res.llc_mcse + 0.02 * exact, (res.llc_mean, exact, res.llc_mcse)


def test_trajectory_records_that_fall_short_are_continued_alone(regression, monkeypatch):
    """llc_trajectory(step_size="auto") with draws sized by the choice: the records of a checkpoint batch that fail
    a check longer chains pass continue from their final states, each dropping its own share into burn-in; a
    record that passes is left as it is, whatever its neighbours need (here the plan is withheld from the first
    record: it reads exactly what it reads with no continuation at all); ε, γ and nβ stay the choice's."""
    import dataclasses

    import slt.dynamics.trajectory as trajectory_module

    real = trajectory_module.auto_settings
    monkeypatch.setattr(
        trajectory_module, "auto_settings", lambda *a, **k: dataclasses.replace(real(*a, **k), num_draws=200)
    )
    checkpoints = [regression.params + 0.01, regression.params]
    kwargs = dict(key=jax.random.key(5), step_size="auto", batch_size=100, num_chains=5, time_budget=30.0)
    planned = trajectory_module.plan_extension
    monkeypatch.setattr(trajectory_module, "plan_extension", lambda result, **k: None)
    alone = slt.dynamics.llc_trajectory(regression.loss_fn, checkpoints, regression.data, **kwargs)
    calls = []

    def second_record_only(result, **k):  # the plans of a batch are made in record order
        calls.append(None)
        return planned(result, **k) if len(calls) % 2 == 0 else None

    monkeypatch.setattr(trajectory_module, "plan_extension", second_record_only)
    traj = slt.dynamics.llc_trajectory(regression.loss_fn, checkpoints, regression.data, **kwargs)
    assert traj.auto.step_size == alone.auto.step_size
    passing, short = traj.results
    assert not passing.extensions and passing.num_draws == 200
    np.testing.assert_array_equal(passing.llc_trace, alone.results[0].llc_trace)
    assert short.extensions and short.num_draws > 200, short.extensions
    assert {r.step_size for r in traj.results} == {traj.auto.step_size}
    exact = quadratic_llc(hessian_eigenvalues(regression), traj.auto.nbeta, traj.auto.localization)
    assert abs(short.llc_mean - exact) < 4 * short.llc_mcse + 0.02 * exact, (short.llc_mean, exact, short.llc_mcse)


def test_trajectory_continuations_stay_within_the_time_budget(regression, monkeypatch):
    """The continuations of a trajectory's batch are bounded by ``time_budget``: with the chosen draws shrunk to
    200 (records that need more) and a budget already spent by the choice, no batch is continued."""
    import dataclasses

    import slt.dynamics.trajectory as trajectory_module

    real = trajectory_module.auto_settings
    monkeypatch.setattr(
        trajectory_module, "auto_settings", lambda *a, **k: dataclasses.replace(real(*a, **k), num_draws=200)
    )
    kwargs = dict(key=jax.random.key(5), step_size="auto", batch_size=100, num_chains=5)
    checkpoints = [regression.params + 0.01, regression.params]
    traj = slt.dynamics.llc_trajectory(regression.loss_fn, checkpoints, regression.data, time_budget=1e-9, **kwargs)
    assert not any(r.extensions for r in traj.results), [r.extensions for r in traj.results]
    assert all(r.num_draws == 200 for r in traj.results)


def test_a_first_grid_that_reached_its_bottom_still_bounds_the_step():
    """Where no first-grid cell met the bias rule, its fit a + bε bounds ε at tolerance · a/b (not: no bound)."""
    from types import SimpleNamespace

    from slt._src.auto import first_grid_bound

    by_rule = SimpleNamespace(by_rule=True, step_size=1e-3, intercept=0.2, slope=10.0, bias_tolerance=0.05)
    assert first_grid_bound(by_rule) == 1e-3
    fallback = SimpleNamespace(by_rule=False, step_size=2e-3, intercept=0.16, slope=18.5, bias_tolerance=0.05)
    assert first_grid_bound(fallback) == pytest.approx(0.05 * 0.16 / 18.5)
    flat = SimpleNamespace(by_rule=False, step_size=2e-3, intercept=0.16, slope=-3.0, bias_tolerance=0.05)
    assert first_grid_bound(flat) is None


def test_auto_on_the_peers_crossing_at_small_localization_matches_quadrature():
    """K ∝ w1² w2⁴ (the float-power loss above) at γ = 1, where the first grid reaches its bottom without a cell
    meeting the bias rule and the warm grid's unrelaxed small cells read high (a negative fitted slope): the
    bound from the first fit keeps ε where the bias is small. Before it, auto chose a cell 8x larger and read
    +9.5% ± 2.5%. Exact: the tempered expectation on a 2-d grid."""
    params, data = _power_problem()
    res = slt.estimate_llc(_power_loss, params, data, key=jax.random.key(0), step_size="auto", localization=1.0)
    x, y = (np.asarray(a, np.float64) for a in data)
    b, c = np.mean(x * y), np.mean(x * x)
    w = np.linspace(-8.0, 8.0, 2001)
    w1, w2 = np.meshgrid(w, w, indexing="ij")
    g = w1 * w2**2
    excess = 0.5 * (g * g * c - 2 * g * b)  # L_n(w) - L_n(0) for the 0.5 · mean squared error
    log_weight = -res.nbeta * excess - 0.5 * (w1**2 + w2**2)
    weight = np.exp(log_weight - log_weight.max())
    exact = float(res.nbeta * np.sum(weight * excess) / np.sum(weight))
    assert res.rhat < 1.05
    assert abs(res.llc_mean - exact) < 4 * res.llc_mcse, (res.llc_mean, res.llc_mcse, exact)


NBETA, H_MAX, GAMMA = 100.0, 2.0, 1.0


def _choose_on(loss, eps, *, max_step_size, started_from="w*"):
    """slt.calibration's rule on synthetic (cell, chain, step) λ̂ traces: nβ = 100, h_max = 2, γ = 1, full batch."""
    from slt._src.settings import SamplingSettings
    from slt.calibration import _choose

    cells, chains, steps = loss.shape
    settings = SamplingSettings.validated(
        num_data=50, step_size=1.0, num_chains=chains, num_draws=steps, num_burnin=0, nbeta=NBETA, localization=GAMMA
    )
    return _choose(
        eps,
        settings,
        loss,
        np.zeros_like(loss),
        {},
        None,
        num_steps=steps,
        num_burnin=0,
        num_params=20,
        bias_tolerance=0.05,
        max_step_size=max_step_size,
        h_max=H_MAX,
        cap=2.0 / (NBETA * H_MAX + GAMMA),
        gradients_per_step=1,
        per_step=1e-3,
        started_from=started_from,
    )


def test_a_cell_next_to_a_diverging_one_is_not_stable():
    """A cell at most 2x below one whose chains diverged is marginal, however calm its own chains were, and any
    cell above a diverging one is unstable (stability is monotone in ε)."""
    eps = 1e-3 * 0.5 ** np.arange(6)
    rng = np.random.default_rng(4)
    loss = 0.1 + 0.01 * rng.normal(size=(6, 4, 400))
    loss[1, 2, 300:] = np.nan  # one chain of the second cell diverged
    res = _choose_on(loss, eps, max_step_size=None)
    assert res.stable.tolist() == [False, False, False, True, True, True]
    assert res.step_size == eps[3]


def test_with_no_equilibrated_cell_the_largest_step_within_the_curvature_bound_is_chosen():
    """Every cell still drifting: no fit, so the stiffest direction's first-order bias ε·(nβ h + γ)/4 bounds the
    step (full batch here), and the largest stable ε within it is chosen rather than the smallest (which mixes
    worst)."""
    eps = 1e-2 * 0.5 ** np.arange(8)
    rng = np.random.default_rng(0)
    trend = np.linspace(0.0, 0.05, 400)  # every trace climbs: no cell passes the drift check
    res = _choose_on(0.01 * rng.normal(size=(8, 4, 400)) + trend, eps, max_step_size=None)
    assert not res.equilibrated.any() and res.stable.all()
    bound = 0.05 * 4 / (NBETA * H_MAX + GAMMA)  # ε with worst-case bias 0.05: 9.95e-4
    assert res.step_size == eps[eps <= bound].max()
    assert "worst-case" in res.note


def test_with_too_few_equilibrated_cells_under_a_bound_the_bound_is_kept():
    """The warm grid of step_size="auto" runs under the first calibration's bound: where it cannot fit (fewer than
    two equilibrated cells), the largest stable ε at or below that bound is chosen, not the grid's smallest."""
    eps = 1e-4 * 0.5 ** np.arange(8)
    rng = np.random.default_rng(1)
    loss = 0.01 * rng.normal(size=(8, 4, 400)) + np.linspace(0.0, 0.05, 400)  # all drifting ...
    loss[-1] = 0.01 * rng.normal(size=(4, 400))  # ... but the smallest cell
    res = _choose_on(loss, eps, max_step_size=3e-5, started_from="warm-up")
    assert res.equilibrated.sum() == 1 and res.equilibrated[-1]
    assert res.step_size == 2.5e-5 and "kept the first calibration's bound" in res.note


def test_a_warm_grid_whose_fitted_slope_is_not_positive_keeps_the_bound():
    """λ̂ rising as ε shrinks (small cells not relaxed from the warm chains) carries no information about SGLD's
    bias, which grows with ε: the bound cell is kept even where it is not equilibrated itself, rather than the
    largest equilibrated cell below it (here 4x smaller)."""
    eps = 1e-4 * 0.5 ** np.arange(8)
    rng = np.random.default_rng(2)
    means = 0.05 + 0.01 * np.arange(8)  # λ̂ = nβ · loss rises as ε falls: a negative fitted slope
    loss = means[:, None, None] + 0.002 * rng.normal(size=(8, 4, 400))
    loss[2] += np.linspace(0.0, 0.02, 400)  # the bound cell (2.5e-5) drifts ...
    loss[3] += np.linspace(0.0, 0.02, 400)  # ... and so does the next one
    res = _choose_on(loss, eps, max_step_size=2.5e-5, started_from="warm-up")
    assert not res.equilibrated[2] and not res.equilibrated[3] and res.equilibrated[4:].all()
    assert res.slope < 0
    assert res.step_size == 2.5e-5 and "no bias information" in res.note
