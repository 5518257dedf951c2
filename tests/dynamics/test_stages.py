"""Stage boundaries of development curves, and turns of essential-dynamics curves."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from slt.dynamics import StageResult, TurnResult, detect_stages, detect_turns, essential_dynamics
from slt.dynamics.stages import noise_scale

# (knots, values, noise s.d., number of points, uniform steps?)
TURNING = [
    ([0, 300, 650, 1000], [0.0, 1.0, 0.3, 1.2], 0.05, 400, True),
    ([0, 450, 1000], [2.0, 0.5, 1.5], 0.05, 300, False),
    ([0, 200, 400, 750, 1000], [0.0, 1.0, 0.2, 1.5, 0.4], 0.04, 500, True),
    ([0, 550, 1000], [0.0, 1.0, 0.0], 0.08, 250, False),
]


@pytest.mark.parametrize(("seed", "spec"), list(enumerate(TURNING)))
def test_turning_points_of_piecewise_linear_curves(seed, spec):
    knots, values, noise, n, uniform = spec
    rng = np.random.default_rng(seed)
    steps = np.linspace(0, 1000, n) if uniform else np.sort(rng.uniform(0, 1000, n))
    curve = np.interp(steps, knots, values) + noise * rng.standard_normal(n)
    res = detect_stages(curve, steps)
    assert isinstance(res, StageResult)
    true = np.asarray(knots[1:-1], dtype=float)
    assert res.boundaries.shape == true.shape, res.stages
    assert np.max(np.abs(res.boundaries - true)) <= 0.03 * 1000
    expected = ["rising" if b > a else "falling" for a, b in zip(values[:-1], values[1:])]
    assert res.kinds == expected
    # stages tile the steps
    assert res.stages[0][0] == steps[0] and res.stages[-1][1] == steps[-1]
    assert all(a[1] == b[0] for a, b in zip(res.stages[:-1], res.stages[1:]))


def test_plateau_starts_and_ends():
    rng = np.random.default_rng(10)
    t = np.linspace(0, 1, 500)
    knots = [0.0, 0.25, 0.5, 0.7, 1.0]
    curve = np.interp(t, knots, [0.0, 1.0, 1.0, 0.2, 0.2]) + 0.03 * rng.standard_normal(t.size)
    res = detect_stages(curve, t)
    assert res.kinds == ["rising", "plateau", "falling", "plateau"]
    np.testing.assert_allclose(res.boundaries, knots[1:-1], atol=0.03)


@pytest.mark.parametrize("seed", range(3))
def test_staircase_of_sigmoid_steps(seed):
    rng = np.random.default_rng(20 + seed)
    t = np.arange(600.0)
    centres = np.array([150.0, 300.0, 450.0]) + rng.uniform(-15, 15, 3)
    heights = rng.uniform(0.5, 2.0, 3)
    curve = sum(h / (1 + np.exp(-(t - c) / 5.0)) for h, c in zip(heights, centres))
    curve = curve + 0.05 * rng.standard_normal(t.size)
    res = detect_stages(curve)
    assert res.kinds == ["plateau", "rising", "plateau", "rising", "plateau", "rising", "plateau"]
    rising = [(a, b) for a, b, kind in res.stages if kind == "rising"]
    for (a, b), c in zip(rising, centres):
        assert a < c < b
        assert abs(0.5 * (a + b) - c) <= 0.03 * 600


@pytest.mark.parametrize("seed", range(8))
def test_pure_noise_has_no_boundaries(seed):
    rng = np.random.default_rng(seed)
    n = [30, 100, 300, 1000][seed % 4]
    noise = rng.standard_normal(n) if seed % 2 else 3.0 + 0.01 * rng.standard_t(3, n)
    res = detect_stages(noise)
    assert res.boundaries.size == 0
    assert res.kinds == ["plateau"]


def test_constant_and_outlier_curves():
    assert detect_stages(np.full(50, 2.5)).kinds == ["plateau"]
    rng = np.random.default_rng(5)
    curve = 0.1 * rng.standard_normal(200)
    curve[120] = 5.0  # one wild checkpoint is not a stage
    assert detect_stages(curve).boundaries.size == 0


def test_noise_scale_ignores_trends_and_nonuniform_steps():
    rng = np.random.default_rng(6)
    steps = np.sort(rng.uniform(0, 100, 2000))
    curve = 3 * steps - 0.02 * steps**2 + 0.5 * rng.standard_normal(steps.size)
    assert noise_scale(curve, steps) == pytest.approx(0.5, rel=0.1)


def test_stage_plot_returns_figure():
    t = np.linspace(0, 1, 200)
    res = detect_stages(np.interp(t, [0, 0.5, 1], [0, 1, 0]) + 0.02 * np.random.default_rng(0).standard_normal(200), t)
    fig = res.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"curve": np.zeros((5, 2))}, "one-dimensional"),
        ({"curve": np.zeros(3)}, "at least 5"),
        ({"curve": np.r_[np.zeros(9), np.nan]}, "NaN"),
        ({"steps": np.r_[0, 2, 1, 3, 4, 5, 6, 7, 8, 9]}, "increasing"),
        ({"steps": np.arange(5)}, "one entry per point"),
        ({"smoothing": 0.0}, "smoothing"),
        ({"threshold": -1}, "threshold"),
    ],
)
def test_stage_errors_name_the_argument(kwargs, match):
    kwargs.setdefault("curve", np.arange(10.0))
    with pytest.raises(ValueError, match=match):
        detect_stages(**kwargs)


# ------------------------------------------------------------------------------------------- turns
def l_shaped(num_points=120, corner=70, dims=3, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(num_points, dtype=float)[:, None]
    first, second = np.eye(dims)[0], np.eye(dims)[1]
    path = np.where(t <= corner, t * first, corner * first + (t - corner) * second)
    return path + noise * rng.standard_normal(path.shape)


@pytest.mark.parametrize(("seed", "num_points", "corner", "dims"), [(0, 120, 70, 2), (1, 200, 60, 3), (2, 60, 30, 5)])
def test_detect_turns_finds_the_corner_of_an_l(seed, num_points, corner, dims):
    res = detect_turns(l_shaped(num_points, corner, dims, seed=seed))
    assert isinstance(res, TurnResult)
    assert res.indices.size == 1
    assert abs(res.indices[0] - corner) <= 0.03 * num_points
    assert np.degrees(res.angle[res.indices[0]]) == pytest.approx(90, abs=15)
    assert res.curvature[res.indices[0]] == np.nanmax(res.curvature)


def test_detect_turns_finds_a_cusp_and_no_turn_on_lines():
    rng = np.random.default_rng(3)
    t = np.arange(120.0)
    cusp = np.stack([np.minimum(t, 120 - t), 0.01 * t], axis=1) + 0.2 * rng.standard_normal((120, 2))
    res = detect_turns(cusp)
    assert res.indices.tolist() == [60] or abs(res.indices[0] - 60) <= 3
    assert np.degrees(res.angle[res.indices[0]]) > 150
    for seed in range(5):
        rng = np.random.default_rng(seed)
        line = np.outer(t, rng.standard_normal(3)) / np.sqrt(3) + rng.uniform(0.1, 1.5) * rng.standard_normal((120, 3))
        assert detect_turns(line).indices.size == 0
        assert detect_turns(rng.standard_normal((120, 3))).indices.size == 0  # noise has no significant chords


def test_turns_of_essential_dynamics_curve():
    """An L-shaped development embedded in 300 outputs: the turn is found on the PC curve."""
    rng = np.random.default_rng(8)
    path = l_shaped(100, 40, 2, noise=0.0)
    outputs = path @ rng.standard_normal((2, 300)) + 0.05 * rng.standard_normal((100, 300))
    ed = essential_dynamics(outputs, n_components=2, steps=10 * np.arange(100))
    res = ed.detect_turns((0, 1))
    assert res.indices.size == 1 and abs(res.indices[0] - 40) <= 3
    assert res.positions[0] == 10 * res.indices[0]
    fig = res.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": np.zeros(20)}, "points"),
        ({"points": np.zeros((5, 2))}, "at least 7"),
        ({"spacing": 0}, "spacing"),
        ({"min_angle": 4.0}, "min_angle"),
        ({"smoothing": -2.0}, "smoothing"),
    ],
)
def test_turn_errors_name_the_argument(kwargs, match):
    kwargs.setdefault("points", l_shaped())
    with pytest.raises(ValueError, match=match):
        detect_turns(**kwargs)
