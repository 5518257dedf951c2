"""Essential dynamics: PCA of outputs across checkpoints recovers a low-dimensional developmental curve."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from slt.dynamics import EssentialDynamics, essential_dynamics, gaussian_smooth, osculating_curvature


def _embedded_curve(seed: int, num_features: int = 500, noise: float = 0.01, isometric: bool = True):
    """A 2-D curve (t, sin t) mapped into R^F by a random linear map, plus small noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2 * np.pi, 120)
    curve = np.stack([t, np.sin(t)], axis=1)
    gauss = rng.standard_normal((2, num_features))
    embed = np.linalg.qr(gauss.T)[0].T if isometric else gauss / np.sqrt(num_features)
    outputs = curve @ embed + noise * rng.standard_normal((t.size, num_features))
    return curve, embed, outputs


def _principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (radians) between the row spaces of a and b."""
    qa = np.linalg.qr(a.T)[0]
    qb = np.linalg.qr(b.T)[0]
    return np.arccos(np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0))


@pytest.mark.parametrize("isometric", [True, False])
def test_recovers_embedded_curve(isometric):
    curve, embed, outputs = _embedded_curve(0, isometric=isometric)
    ed = essential_dynamics(outputs, n_components=3)
    assert isinstance(ed, EssentialDynamics)
    assert ed.components.shape == (120, 3)
    assert ed.loadings.shape == (3, 500)
    assert ed.explained_variance_ratio[:2].sum() > 0.95
    # the first two directions span the embedding's row space
    assert np.max(_principal_angles(ed.loadings[:2], embed)) < np.radians(5.0)  # noise alone tilts them ~2-3°
    # the curve is recovered up to a linear map (a rotation for an isometric embedding)
    centred = curve - curve.mean(0)
    fit, *_ = np.linalg.lstsq(ed.components[:, :2], centred, rcond=None)
    resid = centred - ed.components[:, :2] @ fit
    assert np.linalg.norm(resid) / np.linalg.norm(centred) < 0.01
    if isometric:
        u, _, vt = np.linalg.svd(ed.components[:, :2].T @ centred)
        rotated = ed.components[:, :2] @ (u @ vt)
        assert np.linalg.norm(rotated - centred) / np.linalg.norm(centred) < 0.02


def test_pca_identities_and_sign_convention():
    rng = np.random.default_rng(1)
    outputs = np.cumsum(rng.standard_normal((40, 6, 5)), axis=0)  # trailing axes are flattened
    ed = essential_dynamics(outputs, n_components=4)
    flat = outputs.reshape(40, -1)
    centred = flat - flat.mean(0)
    np.testing.assert_allclose(ed.components, centred @ ed.loadings.T, atol=1e-9)
    np.testing.assert_allclose(ed.loadings @ ed.loadings.T, np.eye(4), atol=1e-10)
    total = np.sum(centred**2)
    np.testing.assert_allclose(ed.explained_variance_ratio, np.sum(ed.components**2, 0) / total, rtol=1e-10)
    np.testing.assert_allclose(ed.explained_variance, np.var(ed.components, axis=0, ddof=1), rtol=1e-10)
    assert np.all(ed.components[-1] >= ed.components[0])
    assert ed.mean.shape == (6, 5) and ed.output_shape == (6, 5)
    assert np.all(np.diff(ed.explained_variance_ratio) <= 0)


def test_accepts_jax_arrays_and_caps_components():
    import jax.numpy as jnp

    outputs = jnp.asarray(np.random.default_rng(2).standard_normal((5, 3)))
    ed = essential_dynamics(outputs, n_components=10)
    assert ed.n_components == 3


def test_smoothing_is_local_linear():
    rng = np.random.default_rng(3)
    t = np.arange(200.0)
    line = np.stack([2 * t + 1, -t], axis=1)
    np.testing.assert_allclose(gaussian_smooth(line, 5.0), line, atol=1e-8)  # lines, ends included, are kept
    noisy = np.sin(t / 20)[:, None] + 0.1 * rng.standard_normal((200, 1))
    smooth = gaussian_smooth(noisy, 4.0)
    assert np.std(smooth[:, 0] - np.sin(t / 20)) < 0.4 * np.std(noisy[:, 0] - np.sin(t / 20))
    ed = essential_dynamics(
        np.outer(np.sin(t / 20), rng.standard_normal(30)) + 0.1 * rng.standard_normal((200, 30)),
        n_components=2,
        smoothing=4.0,
    )
    assert ed.smoothed.shape == ed.components.shape
    assert ed.smoothing == 4.0


def test_osculating_curvature_of_circle_line_and_cusp():
    theta = np.linspace(0, 2 * np.pi, 100, endpoint=False)
    circle = 3.0 * np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=1)
    kappa, angle = osculating_curvature(circle, spacing=2)
    np.testing.assert_allclose(kappa[2:-2], 1 / 3.0, rtol=1e-10)
    np.testing.assert_allclose(angle[2:-2], 4 * np.pi / 100, rtol=1e-8)
    assert np.all(np.isnan(kappa[:2])) and np.all(np.isnan(kappa[-2:]))
    line = np.outer(np.arange(10.0), [1.0, 2.0])
    np.testing.assert_allclose(osculating_curvature(line)[0][1:-1], 0.0, atol=1e-12)
    there_and_back = np.array([[0.0, 0], [1, 0], [2, 0], [1, 0], [0, 0]])
    kappa, angle = osculating_curvature(there_and_back)
    assert kappa[2] == pytest.approx(2.0)  # circle of diameter 1 through the cusp
    assert angle[2] == pytest.approx(np.pi)


def test_curvature_method_and_plot():
    _, _, outputs = _embedded_curve(4)
    ed = essential_dynamics(outputs, n_components=3, smoothing=2.0)
    kappa, angle = ed.curvature((0, 1), spacing=3)
    assert kappa.shape == angle.shape == (120,)
    fig = ed.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 4  # three pairs and a colourbar
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outputs": np.zeros(10)}, "outputs"),
        ({"outputs": np.zeros((2, 4))}, "at least 3"),
        ({"outputs": np.ones((5, 4))}, "identical"),
        ({"outputs": np.eye(5), "n_components": 0}, "n_components"),
        ({"outputs": np.eye(5), "smoothing": -1.0}, "smoothing"),
        ({"outputs": np.eye(5), "steps": np.arange(4)}, "steps"),
        ({"outputs": np.full((5, 2), np.nan)}, "NaN"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        essential_dynamics(**kwargs)
