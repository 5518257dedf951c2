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

__all__ = ["SamplingAlgorithm", "SamplerFactory", "normal_like"]

PyTree = Any


class SamplingAlgorithm(NamedTuple):
    init: Callable[[PyTree], Any]
    step: Callable[[jax.Array, Any, PyTree], tuple[Any, Any]]


class SamplerFactory(Protocol):
    """``factory(posterior, **hyperparameters) -> SamplingAlgorithm``. Must be hashable (a function is)."""

    def __call__(self, posterior: Any, **hyperparameters: Any) -> SamplingAlgorithm: ...


def normal_like(rng_key: jax.Array, tree: PyTree) -> PyTree:
    """Independent standard normal noise with the structure, shapes and dtypes of ``tree``."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(rng_key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    )
