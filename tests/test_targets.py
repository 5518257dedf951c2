"""Adapters: plain loss functions, NNX and linen models, and weight restriction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COMPILES, SAMPLER_CHUNK
from flax import linen, nnx

import slt
from slt.targets import from_loss_fn, path_names

KW = dict(step_size=1e-4, num_chains=2, num_draws=60, num_burnin=10, batch_size=32)


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layer1 = nnx.Linear(3, 6, rngs=rngs)
        self.layer2 = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x):
        return self.layer2(jnp.tanh(self.layer1(x)))


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = jnp.tanh(linen.Dense(6, name="layer1")(x))
        return linen.Dense(2, name="layer2")(x)


@pytest.fixture(scope="module")
def supervised():
    x = jax.random.normal(jax.random.key(1), (128, 3))
    y = jnp.sin(x[:, :2]) + 0.1 * jax.random.normal(jax.random.key(2), (128, 2))
    return x, y


def test_nnx_form_runs_and_a_new_instance_does_not_recompile(supervised, key):
    res = slt.estimate_llc(MLP(nnx.Rngs(0)), supervised, loss=slt.losses.gaussian_nll, key=key, **KW)
    assert np.isfinite(res.llc_mean)
    before = COMPILES(SAMPLER_CHUNK)
    slt.estimate_llc(MLP(nnx.Rngs(1)), supervised, loss=slt.losses.gaussian_nll, key=key, **KW)
    assert COMPILES(SAMPLER_CHUNK) == before


def test_nnx_form_equals_the_plain_function_form(supervised, key):
    model = MLP(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(p, batch):
        x, y = batch
        return slt.losses.gaussian_nll(nnx.merge(graphdef, p, rest)(x), y)

    a = slt.estimate_llc(model, supervised, loss=slt.losses.gaussian_nll, key=key, **KW)
    b = slt.estimate_llc(loss_fn, params, supervised, key=key, **KW)
    np.testing.assert_allclose(a.loss_trace, b.loss_trace, rtol=1e-5)


def test_restricting_to_one_layer_equals_the_frozen_subproblem(supervised, key):
    """Weight-restricted LLC (only layer1 moves) == LLC of the problem over layer1 with layer2 frozen."""
    model = MLP(nnx.Rngs(0))
    restricted = slt.estimate_llc(
        model, supervised, loss=slt.losses.gaussian_nll, where=nnx.PathContains("layer1"), key=key, **KW
    )
    graphdef, layer1, rest = nnx.split(model, nnx.PathContains("layer1"), ...)

    def sub_loss(p, batch):
        x, y = batch
        return slt.losses.gaussian_nll(nnx.merge(graphdef, p, rest)(x), y)

    sub = slt.estimate_llc(sub_loss, layer1, supervised, key=key, **KW)
    np.testing.assert_allclose(restricted.loss_trace, sub.loss_trace, rtol=1e-5)
    np.testing.assert_allclose(restricted.llc_per_chain, sub.llc_per_chain, rtol=1e-4, atol=1e-4)
    full = slt.estimate_llc(model, supervised, loss=slt.losses.gaussian_nll, key=key, **KW)
    assert not np.allclose(full.loss_trace, restricted.loss_trace)


def test_pytree_where_predicate_equals_closing_over_the_frozen_part(small_dln, key):
    problem = small_dln
    restricted = slt.estimate_llc(
        problem.loss_fn, problem.params, problem.data, where=lambda path, leaf: path == (1,), key=key, **KW
    )

    def second_layer_only(w2, batch):
        return problem.loss_fn([problem.params[0], w2], batch)

    sub = slt.estimate_llc(second_layer_only, problem.params[1], problem.data, key=key, **KW)
    # the moving set is a 1-tuple of leaves vs a bare leaf: same noise, same batches
    np.testing.assert_allclose(restricted.loss_trace, sub.loss_trace, rtol=1e-5)


def test_linen_form_equals_the_plain_function_form(supervised, key):
    module = LinenMLP()
    variables = module.init(jax.random.key(0), supervised[0][:1])

    def loss_fn(params, batch):
        x, y = batch
        return slt.losses.gaussian_nll(module.apply({"params": params}, x), y)

    a = slt.estimate_llc(module, variables, supervised, loss=slt.losses.gaussian_nll, key=key, **KW)
    b = slt.estimate_llc(loss_fn, variables["params"], supervised, key=key, **KW)
    np.testing.assert_allclose(a.loss_trace, b.loss_trace, rtol=1e-5)
    c = slt.estimate_llc(
        module,
        variables,
        supervised,
        loss=slt.losses.gaussian_nll,
        key=key,
        where=lambda path, leaf: path[0] == "layer2",
        **KW,
    )
    assert c.loss_trace.shape == a.loss_trace.shape


def test_model_form_errors(supervised, key):
    model = MLP(nnx.Rngs(0))
    with pytest.raises(ValueError, match="`loss` is required"):
        slt.estimate_llc(model, supervised, key=key, **KW)
    with pytest.raises(ValueError, match="pair"):
        slt.estimate_llc(model, supervised[0], loss=slt.losses.gaussian_nll, key=key, **KW)
    with pytest.raises(ValueError, match="selects no"):
        slt.estimate_llc(model, supervised, loss=slt.losses.gaussian_nll, where=nnx.PathContains("nope"), key=key, **KW)
    with pytest.raises(ValueError, match="loss_fn"):
        slt.estimate_llc(lambda p, b: 0.0, jnp.zeros(2), supervised, loss=slt.losses.mse, key=key, **KW)


def test_where_selecting_nothing_is_an_error(small_dln):
    with pytest.raises(ValueError, match="selects no leaf"):
        from_loss_fn(small_dln.loss_fn, small_dln.params, small_dln.data, where=lambda p, l: False)


def test_path_names_are_plain():
    tree = {"a": [jnp.zeros(1), {"b": jnp.zeros(2)}]}
    paths = [path_names(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
    assert paths == [("a", 0), ("a", 1, "b")]


class Wide(nnx.Module):
    """Three outputs: the shape of the issue, where (n, 1) targets broadcast silently (λ̂ = 6.0)."""

    def __init__(self, rngs: nnx.Rngs):
        self.layer = nnx.Linear(3, 3, rngs=rngs)

    def __call__(self, x):
        return self.layer(x)


class LinenWide(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(3)(x)


BROADCAST = (
    r"`loss` gaussian_nll got outputs of shape \(128, 3\) and targets of shape \(128, 1\), which would broadcast"
)


def test_nnx_targets_that_would_broadcast_against_the_outputs_are_refused(supervised, key):
    x, y = supervised
    with pytest.raises(ValueError, match=BROADCAST):
        slt.estimate_llc(Wide(nnx.Rngs(0)), (x, y[:, :1]), loss=slt.losses.gaussian_nll, key=key, **KW)
    with pytest.raises(ValueError, match=r"class labels of shape \(128,\)"):
        slt.targets.make_target(Wide(nnx.Rngs(0)), (x, jnp.zeros((128, 1), int)), loss=slt.losses.cross_entropy)
    # matching shapes build: regression targets of the outputs' shape, integer labels, one-hot labels
    slt.targets.make_target(Wide(nnx.Rngs(0)), (x, jnp.tile(y[:, :1], (1, 3))), loss=slt.losses.gaussian_nll)
    slt.targets.make_target(Wide(nnx.Rngs(0)), (x, jnp.zeros(128, int)), loss=slt.losses.cross_entropy)
    slt.targets.make_target(Wide(nnx.Rngs(0)), (x, jnp.eye(3)[jnp.zeros(128, int)]), loss=slt.losses.cross_entropy)


def test_linen_targets_that_would_broadcast_against_the_outputs_are_refused(supervised, key):
    x, y = supervised
    module = LinenWide()
    variables = module.init(jax.random.key(0), x[:1])
    with pytest.raises(ValueError, match=BROADCAST):
        slt.estimate_llc(module, variables, (x, y[:, :1]), loss=slt.losses.gaussian_nll, key=key, **KW)
    target = slt.targets.make_target(module, variables, (x, jnp.tile(y[:, :1], (1, 3))), loss=slt.losses.gaussian_nll)
    assert target.num_parameters == 12
