"""The localized tempered posterior: its potential and gradient against direct computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt
from slt.posterior import LocalPosterior, default_nbeta, resolve_nbeta


def test_potential_and_gradient_match_the_formula(regression):
    p = regression
    target = slt.targets.make_target(p.loss_fn, p.params, p.data)
    nbeta, gamma = 37.0, 2.5
    post = LocalPosterior(target.loss, target.position, target.frozen, jnp.float32(nbeta), jnp.float32(gamma))
    w = jax.tree_util.tree_map(lambda x: x + 0.1, target.position)
    batch = jax.tree_util.tree_map(lambda x: x[:64], p.data)
    loss, grad = post.loss_and_grad(w, batch)
    flat_w, unravel = jax.flatten_util.ravel_pytree(w)
    flat_c = jax.flatten_util.ravel_pytree(target.position)[0]

    def potential(z):
        return nbeta * p.loss_fn(unravel(z), batch) + 0.5 * gamma * jnp.sum((z - flat_c) ** 2)

    np.testing.assert_allclose(float(loss), float(p.loss_fn(w, batch)), rtol=1e-6)
    np.testing.assert_allclose(float(post.potential(w, batch)), float(potential(flat_w)), rtol=1e-6)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(grad)[0], jax.grad(potential)(flat_w), rtol=1e-5)


def test_default_nbeta_is_n_over_log_n():
    assert default_nbeta(1000) == pytest.approx(1000 / np.log(1000))
    assert resolve_nbeta(None, 1000) == default_nbeta(1000)
    assert resolve_nbeta(5, 1000) == 5.0
    with pytest.raises(ValueError, match="`nbeta`"):
        resolve_nbeta(-1.0, 1000)
    with pytest.raises(ValueError, match="n >= 2"):
        default_nbeta(1)
