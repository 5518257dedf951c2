"""The sampler protocol: ``SamplingAlgorithm(init, step)`` over pure pytrees (the blackjax convention).

A sampler is built from a :class:`slt.posterior.LocalPosterior` and its hyperparameters, and returns

* ``init(position) -> state``
* ``step(rng_key, state, batch) -> (state, info)``

``info.loss`` must be the minibatch loss :math:`L_B(w_t)` at the position the step *started* from (it
comes out of the gradient evaluation for free); the LLC estimator records it. The key is always passed
in, never stored in the state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

__all__ = ["SamplingAlgorithm", "SamplerFactory", "normal_like"]

PyTree = Any


class SamplingAlgorithm(NamedTuple):
    init: Callable[[PyTree], Any]
    step: Callable[[jax.Array, Any, PyTree], tuple[Any, Any]]


class SamplerFactory(Protocol):
    """``factory(posterior, **hyperparameters) -> SamplingAlgorithm``. Must be hashable (a function is).

    What else a sampler offers (an acceptance-recording variant, a step gain, a calibration check, full batch
    only) it declares in its :class:`slt.samplers.SamplerSpec` when it registers, not as attributes.
    """

    def __call__(self, posterior: Any, **hyperparameters: Any) -> SamplingAlgorithm: ...


def normal_like(rng_key: jax.Array, tree: PyTree) -> PyTree:
    """Independent standard normal noise with the structure, shapes and dtypes of ``tree``.

    Drawn in one ``jax.random.normal`` call per dtype and cut into leaves: on CPU the random numbers are
    most of an SGLD step's cost, and one call per leaf costs more to run and, with many leaves, much more
    to compile (measured in benchmarks/RESULTS.md, Speed).
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dtypes = sorted({jnp.dtype(x.dtype).name for x in leaves})
    keys = dict(zip(dtypes, jax.random.split(rng_key, len(dtypes)) if len(dtypes) > 1 else [rng_key]))
    out: list = [None] * len(leaves)
    for name in dtypes:
        members = [i for i, x in enumerate(leaves) if jnp.dtype(x.dtype).name == name]
        sizes = [leaves[i].size for i in members]
        flat = jax.random.normal(keys[name], (sum(sizes),), jnp.dtype(name))
        offset = 0
        for i, size in zip(members, sizes):
            out[i] = flat[offset : offset + size].reshape(leaves[i].shape)
            offset += size
    return jax.tree_util.tree_unflatten(treedef, out)
