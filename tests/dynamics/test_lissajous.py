"""The Lissajous diagnostic: random walks are judged random-walk-like, paths with stages are not.

The test behind it is an exact sign-flip randomization test: on walks with independent symmetric increments
its false-positive rate is at most ``alpha`` whatever their dimension, length or increment law. A fixed
random-walk case therefore has an ``alpha`` chance of being rejected by design (at the default 0.05, case 1
below does get p = 0.02). The fixed cases are run at ``alpha = 0.01`` (a 1 % chance each; the seeds are just
0, 1, 2, ...), and staged paths must be rejected at that stricter level too. The rate at the default level is
measured on 400 fresh walks (Gaussian and heavy-tailed), the power against the old Lissajous statistic on
40 three-waypoint paths.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

from slt.dynamics import LissajousResult, lissajous_diagnostic, random_walk_pca_ratios
from slt.dynamics.lissajous import _persistence_p_value


def random_walk(rng, num_points, dims, law="gauss"):
    steps = (num_points - 1, dims)
    if law == "gauss":
        inc = rng.standard_normal(steps)
    elif law == "student3":
        inc = rng.standard_t(3, steps)
    elif law == "student2":
        inc = rng.standard_t(2, steps)
    elif law == "cauchy_clipped":
        inc = np.clip(rng.standard_cauchy(steps), -20, 20)
    elif law == "anisotropic":
        inc = rng.standard_normal(steps) / np.arange(1, dims + 1)
    else:
        raise ValueError(law)
    return np.concatenate([np.zeros((1, dims)), np.cumsum(inc, axis=0)])


def staged_path(rng, num_points, dims, segments, noise):
    """Piecewise-linear path through segments + 1 random waypoints, plus noise (a fraction of a segment)."""
    waypoints = rng.standard_normal((segments + 1, dims))
    inner = np.sort(rng.choice(np.arange(num_points // 10, num_points - num_points // 10), segments - 1, replace=False))
    knots = np.r_[0, inner, num_points - 1]
    t = np.arange(num_points)
    path = np.stack([np.interp(t, knots, waypoints[:, d]) for d in range(dims)], axis=1)
    seg = np.sqrt(np.mean(np.sum(np.diff(waypoints, axis=0) ** 2, axis=1)))
    return path + noise * seg * rng.standard_normal(path.shape)


def test_null_ratios_match_the_random_walk_limit():
    q = random_walk_pca_ratios(2000)
    k = np.arange(1, 6)
    np.testing.assert_allclose(q[:5], 6 / (np.pi**2 * k**2), rtol=2e-3)
    assert q.sum() == pytest.approx(1.0)
    # at finite T they are exactly the spectrum of the centred cumulative-sum covariance, with cosine modes
    t = 50
    lower = np.tril(np.ones((t, t)))
    centre = np.eye(t) - 1.0 / t
    lam, vec = np.linalg.eigh(centre @ lower @ lower.T @ centre)
    np.testing.assert_allclose(lam[::-1][: t - 1] / lam.sum(), random_walk_pca_ratios(t), atol=1e-12)
    cos1 = np.cos(np.pi * (np.arange(t) + 0.5) / t)
    assert abs(vec[:, -1] @ cos1) / np.linalg.norm(cos1) == pytest.approx(1.0, abs=1e-10)


RANDOM_WALKS = [
    (100, 500, "gauss"),
    (150, 20, "student3"),
    (80, 1000, "cauchy_clipped"),
    (120, 3, "gauss"),
    (100, 200, "student2"),
    (90, 100, "anisotropic"),
]


@pytest.mark.parametrize(("case", "spec"), list(enumerate(RANDOM_WALKS)))
def test_random_walks_are_random_walk_like(case, spec):
    num_points, dims, law = spec
    walk = random_walk(np.random.default_rng(case), num_points, dims, law)
    res = lissajous_diagnostic(walk, alpha=0.01)
    assert isinstance(res, LissajousResult)
    assert res.random_walk_like, res
    assert res.p_value > res.alpha


STAGED = [
    (100, 50, 3, 0.01),
    (150, 500, 4, 0.02),
    (80, 10, 5, 0.01),
    (120, 3, 3, 0.01),
    (60, 1000, 4, 0.0),
]


@pytest.mark.parametrize(("case", "spec"), list(enumerate(STAGED)))
def test_staged_paths_are_not_random_walk_like(case, spec):
    num_points, dims, segments, noise = spec
    path = staged_path(np.random.default_rng(100 + case), num_points, dims, segments, noise)
    res = lissajous_diagnostic(path, alpha=0.01)
    assert not res.random_walk_like, res
    assert res.statistic > res.threshold
    assert res.p_value <= res.alpha


def test_false_positive_rate_on_fresh_random_walks():
    """400 fresh walks, half Gaussian, half heavy-tailed (Student-t with 2 and 3 dof), 5 to 400 dims.

    The verdict's p-value is exact by construction; the rejection rate must stay below α + 3 binomial
    standard errors (200 walks each: SE = sqrt(0.05 · 0.95 / 200) = 1.5 %, bound 11.5 %; together 9.6 %).
    The persistence p-value alone is used (identical to the full diagnostic's; checked below) to keep this fast.
    """
    rng = np.random.default_rng(2024)
    alpha, num = 0.05, 200
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / num)
    rejected = {"gauss": 0, "heavy": 0}
    for i in range(2 * num):
        kind = "gauss" if i % 2 else "heavy"
        law = "gauss" if kind == "gauss" else ("student2" if i % 4 == 0 else "student3")
        walk = random_walk(rng, int(rng.choice([40, 80])), int(rng.choice([5, 30, 400])), law)
        rejected[kind] += _persistence_p_value(walk, seed=i)[1] <= alpha
    assert rejected["gauss"] / num <= bound, rejected
    assert rejected["heavy"] / num <= bound, rejected
    total_bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / (2 * num))
    assert (rejected["gauss"] + rejected["heavy"]) / (2 * num) <= total_bound, rejected


def test_persistence_p_value_is_the_verdicts():
    path = staged_path(np.random.default_rng(9), 130, 60, 3, 0.01)
    for x in (path, random_walk(np.random.default_rng(10), 130, 60, "student2")):
        res = lissajous_diagnostic(x, num_surrogates=49, seed=3, max_points=64)
        stat, p = _persistence_p_value(x, num_surrogates=49, seed=3, max_points=64)
        assert res.test == "persistence"
        assert (res.statistic, res.p_value) == (stat, p) == (res.persistence_statistic, res.persistence_p_value)
        assert res.random_walk_like == (p > res.alpha)
        assert res.statistic == max(res.persistence_z.max(), res.roughness_z)
        assert res.persistence_z.shape == res.persistence_scales.shape
        old = lissajous_diagnostic(x, num_surrogates=49, seed=3, max_points=64, test="lissajous")
        assert (old.statistic, old.p_value) == (res.lissajous_statistic, res.lissajous_p_value)
        assert old.persistence_p_value == res.persistence_p_value


def diffusing_staged_path(rng, num_points, dims, diffusion):
    """Three waypoints (two straight stages) plus a Gaussian random walk whose end-to-end displacement is
    ``diffusion`` segment lengths: stages seen through SGD-like noise."""
    path = staged_path(rng, num_points, dims, 2, 0.0)
    length = math.sqrt(2 * dims)
    walk = np.cumsum(rng.standard_normal(path.shape), axis=0) * diffusion * length / math.sqrt(dims * num_points)
    return path + walk


def test_power_beats_the_lissajous_statistic_on_three_waypoint_paths():
    """40 paths through 3 waypoints (T = 80, 200 dims) with SGD-like diffusion of 2.5 segment lengths.

    Both tests run on the same paths and sign flips, so the comparison is paired: an exact McNemar (sign) test
    on the paths that only one of them rejects must find the persistence test ahead at the 5 % level. On 200
    other paths of this kind: persistence 67.5 %, Lissajous 38.5 %; on 40 paths with two seeds the McNemar
    p-values were 0.001 and 0.013.
    """
    rng = np.random.default_rng(31)
    new = old = new_only = old_only = 0
    num = 40
    for i in range(num):
        res = lissajous_diagnostic(diffusing_staged_path(rng, 80, 200, 2.5), num_surrogates=99, seed=i)
        a, b = res.persistence_p_value <= 0.05, res.lissajous_p_value <= 0.05
        new, old = new + a, old + b
        new_only, old_only = new_only + (a and not b), old_only + (b and not a)
    discordant = new_only + old_only
    mcnemar_p = sum(math.comb(discordant, j) for j in range(new_only, discordant + 1)) / 2**discordant
    assert mcnemar_p <= 0.05, (new, old, new_only, old_only)
    assert new / num >= 0.5, (new, old)


def test_power_on_staged_paths():
    """The suite's earlier power check (4-6 waypoints, T = 48, 5-200 dims, per-coordinate noise ≤ 2 %)."""
    rng = np.random.default_rng(7)
    num = 40
    rejected = 0
    for i in range(num):
        dims = int(rng.choice([5, 20, 200]))
        path = staged_path(rng, 48, dims, int(rng.integers(3, 6)), float(rng.uniform(0.0, 0.02)))
        rejected += _persistence_p_value(path, num_surrogates=99, seed=i)[1] <= 0.05
    assert rejected / num >= 0.9


def test_clock_and_pc2_extremum_do_not_separate_a_random_walk():
    """A high-dimensional random walk shows a 'developmental clock' and a mid-development PC2 extremum."""
    res = lissajous_diagnostic(random_walk(np.random.default_rng(11), 100, 2000))
    assert res.random_walk_like
    assert res.developmental_clock and abs(res.pc1_spearman) > 0.95
    assert res.pc2_extremum_position == pytest.approx(0.5, abs=0.1)
    assert res.pc2_extremum_time == pytest.approx(0.5, abs=0.1)
    assert np.all(res.cosine_correlations[:3] > 0.9)
    np.testing.assert_allclose(res.explained_variance_ratio[:2], res.null_explained_variance_ratio[:2], atol=0.1)


def test_result_fields_determinism_and_drift():
    walk = random_walk(np.random.default_rng(3), 50, 40)
    a = lissajous_diagnostic(walk, n_components=4, num_surrogates=49, seed=5)
    b = lissajous_diagnostic(walk, n_components=4, num_surrogates=49, seed=5)
    assert a.statistic == b.statistic and a.p_value == b.p_value
    assert a.lissajous_p_value == b.lissajous_p_value
    np.testing.assert_array_equal(a.null_statistics, b.null_statistics)
    c = lissajous_diagnostic(walk, n_components=4, num_surrogates=49, seed=6)
    assert not np.array_equal(a.null_statistics, c.null_statistics)  # the seed drives the sign flips
    assert a.components.shape == (50, 4)
    assert a.explained_variance_ratio.shape == a.null_explained_variance_ratio.shape == (4,)
    assert a.surrogate_explained_variance_ratio.shape == (49, 4)
    assert a.null_statistics.shape == (49,)
    assert 1 / 50 <= a.p_value <= 1
    # a walk with a strong drift is development in one direction, not a random walk
    drift = walk + np.outer(np.arange(50), np.ones(40))
    assert not lissajous_diagnostic(drift, num_surrogates=49).random_walk_like


def test_long_trajectories_are_subsampled():
    res = lissajous_diagnostic(random_walk(np.random.default_rng(4), 1000, 30), max_points=100, num_surrogates=49)
    assert res.stride == 10 and res.components.shape[0] == 100


def test_plot_returns_figure():
    res = lissajous_diagnostic(random_walk(np.random.default_rng(5), 60, 50), num_surrogates=49)
    fig = res.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    matplotlib.pyplot.close(fig)
    assert "random-walk-like" in repr(res)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trajectory": np.zeros(20)}, "trajectory"),
        ({"trajectory": np.zeros((5, 3))}, "at least 8"),
        ({"trajectory": np.ones((20, 3))}, "does not move"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": 0.01, "num_surrogates": 50}, "num_surrogates"),
        ({"n_components": 0}, "n_components"),
        ({"max_points": 4}, "max_points"),
        ({"test": "pca"}, "test"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    kwargs.setdefault("trajectory", random_walk(np.random.default_rng(0), 20, 3))
    with pytest.raises(ValueError, match=match):
        lissajous_diagnostic(**kwargs)


def test_one_dimensional_walk_is_supported():
    res = lissajous_diagnostic(random_walk(np.random.default_rng(6), 50, 1), num_surrogates=49)
    assert res.n_components == 1 and math.isnan(res.pc2_extremum_position)
