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
    """A sampler bound to its posterior and hyperparameters: ``init(position) -> state`` and
    ``step(rng_key, state, batch) -> (state, info)`` (module docstring).

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> from slt.samplers import SamplingAlgorithm
        >>> def loss(w, frozen, batch):
        ...     return 0.5 * jnp.sum(w**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> algorithm = slt.samplers.sgld(posterior, step_size=0.02)
        >>> isinstance(algorithm, SamplingAlgorithm), algorithm._fields
        (True, ('init', 'step'))
        >>> state, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.zeros(2)), None)
        >>> state.position.shape, float(info.loss)  # info.loss: L_B where the step started
        ((2,), 0.0)
    """

    init: Callable[[PyTree], Any]
    step: Callable[[jax.Array, Any, PyTree], tuple[Any, Any]]


class SamplerFactory(Protocol):
    """``factory(posterior, **hyperparameters) -> SamplingAlgorithm``. Must be hashable (a function is).

    What else a sampler offers (an acceptance-recording variant, a step gain, a calibration check, full batch
    only) it declares in its :class:`slt.samplers.SamplerSpec` when it registers, not as attributes.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> def half_step_sgld(posterior, step_size):  # hyperparameters in, a SamplingAlgorithm out
        ...     return slt.samplers.sgld(posterior, step_size=step_size / 2)
        >>> def loss(w, frozen, batch):
        ...     return 0.5 * jnp.sum(w**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> isinstance(half_step_sgld(posterior, step_size=0.02), slt.samplers.SamplingAlgorithm)
        True
        >>> slt.samplers.sampler_spec(half_step_sgld).name  # sampler=half_step_sgld works without registering
        'half_step_sgld'
    """

    def __call__(self, posterior: Any, **hyperparameters: Any) -> SamplingAlgorithm: ...


def normal_like(rng_key: jax.Array, tree: PyTree) -> PyTree:
    """Independent standard normal noise with the structure, shapes and dtypes of ``tree``.

    Drawn in one ``jax.random.normal`` call per dtype and cut into leaves: on CPU the random numbers are
    most of an SGLD step's cost, and one call per leaf costs more to run and, with many leaves, much more
    to compile (measured in benchmarks/RESULTS.md, Speed).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from slt.samplers import normal_like
        >>> tree = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3, jnp.bfloat16)}
        >>> noise = normal_like(jax.random.key(0), tree)
        >>> noise["w"].shape, str(noise["b"].dtype)
        ((2, 3), 'bfloat16')
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
