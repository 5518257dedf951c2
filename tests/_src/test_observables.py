"""Built-in observables against the same quantities computed on the host from the recorded positions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt


def _flat(params, batch):
    return jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(params)])


def test_builtins_match_host_computations(small_dln, key):
    p = small_dln
    probe = jax.tree_util.tree_map(lambda x: x[:5], p.data)
    res = slt.estimate_llc(
        p.loss_fn,
        p.params,
        p.data,
        key=key,
        step_size=1e-3,
        num_chains=2,
        num_draws=50,
        num_burnin=10,
        batch_size=50,
        thin=3,
        observables={
            "w": _flat,
            "norm": "weight_norm",
            "groups": "group_norms",
            "dist": "distance",
            "grad": "grad_norm",
            "loss": "loss",
            "probe": slt.observables.per_sample_loss(probe),
        },
    )
    o = res.observables
    assert o["w"].shape == (2, 50, p.num_parameters if hasattr(p, "num_parameters") else o["w"].shape[2])
    w = o["w"].astype(np.float64)
    center = np.asarray(_flat(p.params, None), np.float64)
    np.testing.assert_allclose(o["norm"], np.linalg.norm(w, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(o["dist"], np.linalg.norm(w - center, axis=-1), rtol=1e-4, atol=1e-6)
    assert np.array_equal(o["loss"], res.loss_trace)  # the kernel's own L_B(w_t)
    # group norms: one per top-level parameter group, in the order of the pytree
    names = slt.observables.group_names(p.params)
    assert o["groups"].shape == (2, 50, len(names))
    np.testing.assert_allclose((o["groups"] ** 2).sum(-1), o["norm"] ** 2, rtol=1e-5)
    # per-sample losses at a draw: their mean is the loss of the probe batch at that draw
    unravel = jax.flatten_util.ravel_pytree(p.params)[1]
    draw = unravel(jnp.asarray(o["w"][1, 7]))
    np.testing.assert_allclose(o["probe"][1, 7].mean(), float(p.loss_fn(draw, probe)), rtol=1e-5)
    assert np.all(o["grad"] > 0)


def test_observable_errors_name_the_problem(small_dln, key):
    p = small_dln
    common = dict(key=key, step_size=1e-3, num_draws=10, num_burnin=0)
    with pytest.raises(ValueError, match="unknown built-in 'nrom'"):
        slt.estimate_llc(p.loss_fn, p.params, p.data, observables={"x": "nrom"}, **common)
    with pytest.raises(ValueError, match="per_sample_loss\\(probe_data\\)"):
        slt.estimate_llc(p.loss_fn, p.params, p.data, observables={"x": "per_sample_loss"}, **common)
    with pytest.raises(ValueError, match="identifiers"):
        slt.estimate_llc(p.loss_fn, p.params, p.data, observables={"my obs": "distance"}, **common)
