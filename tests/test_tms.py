"""The toy model of superposition: data, loss normalization, k-gon critical points and their λ."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt
from slt.models.tms import kgon_llc, kgon_params, kgon_radius_and_bias, population_loss, tms_forward, tms_loss

NUM_DATA = 1000


@pytest.fixture(scope="module")
def five_and_six():
    return (
        slt.models.tms(num_data=NUM_DATA, seed=4, point="5-gon"),
        slt.models.tms(num_data=NUM_DATA, seed=4, point=6),
    )


def _population_grad_and_hessian(flat: np.ndarray, num_features: int, step: float = 1e-4):
    """Central differences of the closed-form population loss in float64 (numpy: nothing to compile)."""

    def h(v):
        return population_loss({"W": v[: 2 * num_features].reshape(2, num_features), "b": v[2 * num_features :]}, xp=np)

    eye = np.eye(flat.size) * step
    grad = np.array([(h(flat + e) - h(flat - e)) / (2 * step) for e in eye])

    def second(e, f):
        return (h(flat + e + f) - h(flat + e - f) - h(flat - e + f) + h(flat - e - f)) / (4 * step**2)

    hess = np.array([[second(e, f) for f in eye] for e in eye])
    return grad, 0.5 * (hess + hess.T)


_loss_grad = jax.jit(jax.grad(tms_loss))


def _gmax(problem):
    grad = _loss_grad(problem.params, problem.data)
    return max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(grad))


def test_shapes_data_and_lambda(five_and_six):
    p5, p6 = five_and_six
    for p in (p5, p6):
        assert p.params["W"].shape == (2, 6) and p.params["b"].shape == (6,)
        assert p.data.shape == (NUM_DATA, 6) and p.num_parameters == 18
        x = np.asarray(p.data)
        assert np.all(np.count_nonzero(x, axis=1) == 1)  # exactly one active feature, x = mu e_i
        assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(p5.data, p6.data)  # same seed: same data, whatever the point
    assert (p5.true_llc, p5.multiplicity) == (7, 1)
    assert (p6.true_llc, p6.multiplicity) == (slt.theory.regular(17)[0], 1)  # 17/2
    assert kgon_llc(5, positive_biases=1)[0] == 8.5


def test_loss_is_the_batch_mean_of_the_summed_squared_error(five_and_six):
    p = five_and_six[1]
    x = np.asarray(p.data[:7])
    per_example = [float(jnp.sum((x[i] - tms_forward(p.params, x[i : i + 1])[0]) ** 2)) for i in range(7)]
    assert float(tms_loss(p.params, x)) == pytest.approx(np.mean(per_example), rel=1e-6)
    w, b = np.asarray(p.params["W"], np.float64), np.asarray(p.params["b"], np.float64)
    manual = np.maximum(x.astype(np.float64) @ w.T @ w + b, 0.0)
    assert float(tms_loss(p.params, x)) == pytest.approx(np.mean(np.sum((x - manual) ** 2, axis=1)), rel=1e-5)


def test_population_kgons_have_the_published_losses():
    # Chen et al. (arXiv 2310.06301): H = 0.06874 at the 5-gon, 0.04819 at the 6-gon (c = 6)
    for k, published in [(5, 0.06874), (6, 0.04819)]:
        radius, bias = kgon_radius_and_bias(k)
        assert bias < 0
        loss = float(population_loss(kgon_params(k, radius, bias), xp=np))
        assert round(loss, 5) == published


def test_population_loss_matches_a_large_sample():
    p = slt.models.tms(num_data=100_000, seed=1, point=5, refine_steps=0)
    h = float(population_loss(p.params, xp=np))
    sample = float(tms_loss(p.params, p.data))
    per_example = jax.vmap(lambda x: tms_loss(p.params, x[None]))(p.data)
    assert abs(sample - h) < 4.0 * float(jnp.std(per_example)) / np.sqrt(p.num_data)


def test_kgons_are_critical_points_of_the_data_loss(five_and_six):
    for p in five_and_six:
        assert _gmax(p) < 1e-5
    symmetric = slt.models.tms(num_data=NUM_DATA, seed=4, point=6, refine_steps=0)
    assert _gmax(symmetric) > 1e-4  # the population k-gon is not critical for a finite sample
    assert float(symmetric.loss_fn(symmetric.params, symmetric.data)) > float(
        five_and_six[1].loss_fn(five_and_six[1].params, five_and_six[1].data)
    )


@pytest.mark.parametrize(("num_features", "k", "positive"), [(6, 5, 0), (6, 6, 0), (6, 5, 1), (8, 7, 0), (8, 8, 0)])
def test_hessian_rank_gives_lambda(num_features, k, positive):
    """λ = rank(Hessian)/2 at a minimally singular point: the zero eigenvalues are the rotation plus three
    exactly flat directions per negative dead feature, and the rest is positive definite."""
    radius, bias = kgon_radius_and_bias(k, num_features)
    dead = [1.0 / (2 * num_features)] * positive + [bias] * (num_features - k - positive)
    params = kgon_params(k, radius, bias, num_features=num_features, dead_biases=dead)
    flat = np.concatenate([np.ravel(params["W"]), params["b"]]).astype(np.float64)
    grad, hess = _population_grad_and_hessian(flat, num_features)
    assert np.abs(grad).max() < 1e-6
    eig = np.linalg.eigvalsh(hess)
    zero = np.abs(eig) < 1e-5
    assert eig[~zero].min() > 1e-3
    assert zero.sum() == 1 + 3 * (num_features - k - positive)
    assert kgon_llc(k, positive)[0] == (flat.size - zero.sum()) / 2


def test_tms_validation():
    with pytest.raises(ValueError, match="point"):
        slt.models.tms(point="4-gon")
    with pytest.raises(ValueError, match="point"):
        slt.models.tms(point="pentagon")
    with pytest.raises(ValueError, match="point"):
        slt.models.tms(point=7)  # k > c = 6
    with pytest.raises(ValueError, match="num_data"):
        slt.models.tms(num_data=1)
    with pytest.raises(ValueError, match="positive_biases"):
        slt.models.tms(point=6, positive_biases=1)
    with pytest.raises(ValueError, match="dead_bias"):
        slt.models.tms(point=5, dead_bias=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("k", [5, 6])
def test_llc_of_the_population_loss_approaches_lambda_at_large_n(k):
    """The LLC estimator (exact MALA) on the closed-form population loss at nβ = n/log n, n = 5e5: within 5% of
    λ = 7 and 8.5. (At n = 5000 the same posterior sits 10-25% above λ: see benchmarks/RESULTS.md.)"""
    radius, bias = kgon_radius_and_bias(k)
    params = kgon_params(k, radius, bias, dead_biases=[-4.0] * (6 - k))
    nbeta = 5e5 / np.log(5e5)
    res = slt.estimate_llc(
        lambda p, batch: population_loss(p) + 0.0 * jnp.mean(batch),
        params,
        jnp.zeros((64, 1)),
        key=jax.random.key(0),
        sampler="mala",
        step_size=0.8 / (1.3 * nbeta + 1.0),
        nbeta=nbeta,
        num_chains=4,
        num_draws=20_000,
        num_burnin=5_000,
        localization=1.0,
    )
    assert res.rhat < 1.05
    assert abs(res.llc_mean - float(kgon_llc(k)[0])) < 0.05 * float(kgon_llc(k)[0])


def test_training_from_a_small_start_reaches_a_kgon_and_the_linear_control_reaches_pca():
    """train_tms from W ~ N(0, 0.1²): the ReLU model leaves the origin and settles at a loss below the best any
    affine map through 2 dimensions can do: x = μ e_i has mean 1/(2c) per feature and covariance
    I/(3c) − 11ᵀ/(4c²), so PCA keeps two of the c − 1 eigenvalues 1/(3c) and leaves
    1/3 − 1/(4c) − 2/(3c) ≈ 0.181 for c = 6 (the linear control's optimum): superposition. The linear control
    reaches that bound, up to the finite-n fit. Records are
    where asked, and the run is the same whatever the records (minibatch t from fold_in(key, t))."""
    c = 6
    x = slt.models.tms_data(c, 2000, seed=3)
    start = slt.models.tms_init(jax.random.key(0), c)
    kwargs = dict(key=jax.random.key(1), num_steps=3000, learning_rate=3e-3, batch_size=256)
    ckpts, steps, losses = slt.models.train_tms(start, x, record_steps=[0, 1000, 3000], **kwargs)
    assert steps.tolist() == [0, 1000, 3000] and len(ckpts) == 3
    bound = 1 / 3 - 1 / (4 * c) - 2 / (3 * c)
    assert losses[-1] < 0.5 * bound, losses
    only_end, _, end_losses = slt.models.train_tms(start, x, record_steps=[3000], **kwargs)
    np.testing.assert_allclose(np.asarray(only_end[-1]["W"]), np.asarray(ckpts[-1]["W"]), rtol=1e-5, atol=1e-6)
    _, _, linear = slt.models.train_tms(start, x, record_steps=[0, 3000], linear=True, **kwargs)
    assert abs(linear[-1] / bound - 1) < 0.1, linear  # PCA, up to the in-sample fit of n = 2000
    with pytest.raises(ValueError, match="record_steps"):
        slt.models.train_tms(start, x, record_steps=[5, 2], **kwargs)
