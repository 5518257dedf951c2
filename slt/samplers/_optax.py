r"""The samplers as optax ``GradientTransformation``\ s: sample inside your own optax loop, get the driver's numbers.

The LLC paper's reference code samples with an optimizer: a loop that takes a minibatch, computes the gradient
of the minibatch loss :math:`\nabla L_B(w_t)` and applies an update. :func:`sgld_transform` is that update,

.. math::

    u_t = -\frac{\varepsilon}{2}\Big[n\beta\, g_t + \gamma (w_t - w^*)\Big] + \sqrt{\varepsilon}\,\xi_t,
    \qquad w_{t+1} = w_t + u_t \quad (\texttt{optax.apply\_updates}),

where :math:`g_t = \nabla L_{B_t}(w_t)` is the plain loss gradient the loop passes in (not multiplied by nβ,
without the localization term) and ``params`` (:math:`w_t`) must be passed to ``update``.
:func:`rmsprop_sgld_transform` and :func:`sghmc_transform` do the same for :mod:`slt.samplers.rmsprop_sgld`
and :mod:`slt.samplers.sghmc`.

**The driver's randomness.** The state holds the chain's key and the step counter t, and the noise
:math:`\xi_t` is drawn from exactly the key that the driver (:mod:`slt._src.driver`) gives step t of that
chain: with ``block = min(RNG_BLOCK, num_steps)``, ``b, j = divmod(t, block)``,
``index_key, step_key = split(fold_in(chain_key, b))`` and the kernel key ``split(step_key, block)[j]``.
:func:`minibatch_indices` gives the driver's minibatch of the same step,
``randint(index_key, (block, batch_size), 0, n)[j]``. So ``num_steps`` must be the run's ``num_steps`` (it
sets the block). ``key`` is *one chain's* key: the driver splits the run's key with
``jax.random.split(key, num_chains)`` and chain c uses row c, so the chain c of
``run_chains(target, key=key, num_chains=C, ...)`` is reproduced with ``jax.random.split(key, C)[c]``
(even for C = 1, the chain's key is not the run's key).

**The same numbers.** The update is computed with the kernel's own operations (the same products, the same
noise, nβ, γ and ε in float32 as the driver passes them), so with the same gradients the only difference is where
the sum is rounded: the driver rounds :math:`(w - \frac\varepsilon2 G) + \sqrt\varepsilon\xi`, an optax loop
:math:`w + (-\frac\varepsilon2 G + \sqrt\varepsilon\xi)`, at most 2 ulp of a coordinate per SGLD or
RMSprop-SGLD step. SGHMC's update is the new momentum and the kernel's position step is ``w + v``, exactly
``optax.apply_updates``: fed the same gradients it moves bit for bit. A user's jitted loss and gradient are
themselves rounded a few ulp apart from the driver's (compiled vmapped over chains), so a loop reproduces the
driver's per-step losses to about 1e-6 relative, not bitwise (``tests/samplers/test_optax.py``: ≤ 5.5e-7 over
300 steps of a small DLN).

Example: a chain of 20 SGLD steps in a plain optax loop, and the same chain from the driver.

>>> import jax, optax, numpy as np, slt
>>> from slt.samplers import minibatch_indices, sgld_transform
>>> problem = slt.models.deep_linear_network([3, 2, 3], 1, num_data=200, seed=0)
>>> x, y = problem.data
>>> settings = dict(num_steps=20, batch_size=32, nbeta=50.0, localization=100.0)
>>> key = jax.random.key(0)
>>> chain_key = jax.random.split(key, 1)[0]  # chain 0 of a one-chain run
>>> tx = sgld_transform(1e-4, nbeta=50.0, localization=100.0, center=problem.params, key=chain_key,
...                     num_steps=20)
>>> @jax.jit
... def step(params, state):
...     idx = minibatch_indices(chain_key, state.step, batch_size=32, num_data=200, num_steps=20)
...     batch = (x[idx], y[idx])
...     loss, grads = jax.value_and_grad(problem.loss_fn)(params, batch)
...     updates, state = tx.update(grads, state, params)
...     return optax.apply_updates(params, updates), state, loss
>>> params, state, losses = problem.params, tx.init(problem.params), []
>>> for _ in range(20):
...     params, state, loss = step(params, state)
...     losses.append(loss)
>>> target = slt.targets.from_loss_fn(problem.loss_fn, problem.params, problem.data)
>>> trace = slt.run_chains(target, key=key, num_chains=1, sampler_params={"step_size": 1e-4},
...                        example_losses_at_center=np.zeros(200), **settings)  # zeros: L_B(w*) is not needed
>>> bool(np.allclose(losses, trace.loss[0], rtol=1e-5, atol=0))
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from slt._src.rng import block_randomness, rng_block
from slt._src.validate import as_key, positive_int
from slt.posterior import potential_gradient
from slt.samplers.base import normal_like

__all__ = [
    "SGLDTransformState",
    "RMSpropSGLDTransformState",
    "SGHMCTransformState",
    "sgld_transform",
    "rmsprop_sgld_transform",
    "sghmc_transform",
    "minibatch_indices",
]

PyTree = Any

NEEDS_PARAMS = (
    "{name}.update needs the current parameters (the position w_t, for the localization term): call "
    "`tx.update(grads, state, params)`."
)


class SGLDTransformState(NamedTuple):
    """State of :func:`sgld_transform`: the chain's key and the step counter t.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from slt.samplers import sgld_transform
        >>> tx = sgld_transform(1e-3, nbeta=10.0, localization=1.0, center=jnp.zeros(2), key=jax.random.key(0),
        ...                     num_steps=100)
        >>> state = tx.init(jnp.zeros(2))
        >>> state._fields, int(state.step)
        (('key', 'step'), 0)
    """

    key: jax.Array  # the chain's key (typed), fixed
    step: jax.Array  # t: steps taken so far (int32); selects the driver's kernel key of step t


class RMSpropSGLDTransformState(NamedTuple):
    """State of :func:`rmsprop_sgld_transform`: key, step counter and the running mean square V.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from slt.samplers import rmsprop_sgld_transform
        >>> tx = rmsprop_sgld_transform(1e-3, nbeta=10.0, localization=1.0, center=jnp.zeros(2),
        ...                             key=jax.random.key(0), num_steps=100)
        >>> state = tx.init(jnp.zeros(2))
        >>> state._fields, state.square_avg.tolist()
        (('key', 'step', 'square_avg'), [0.0, 0.0])
    """

    key: jax.Array
    step: jax.Array
    square_avg: PyTree  # V: running mean of the squared loss gradient


class SGHMCTransformState(NamedTuple):
    """State of :func:`sghmc_transform`: key, step counter and the momentum v (the last update).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from slt.samplers import sghmc_transform
        >>> tx = sghmc_transform(1e-3, nbeta=10.0, localization=1.0, center=jnp.zeros(2), key=jax.random.key(0),
        ...                      num_steps=100)
        >>> state = tx.init(jnp.zeros(2))
        >>> state._fields, state.momentum.tolist()
        (('key', 'step', 'momentum'), [0.0, 0.0])
    """

    key: jax.Array
    step: jax.Array
    momentum: PyTree  # v: the last update (the position step)


# ------------------------------------------------------------------------------------- the driver's keys
def _block(num_steps) -> int:
    return rng_block(positive_int(num_steps, "num_steps"))


def _step_keys(chain_key: jax.Array, step, block: int, batch_size: int = 1, num_data: int = 1):
    """``(minibatch indices, kernel key)`` of step ``step`` as the driver derives them (:mod:`slt._src.rng`)."""
    b, j = jnp.divmod(jnp.asarray(step, dtype=int), block)
    idx, kernel_keys = block_randomness(chain_key, b, block=block, batch_size=batch_size, num_data=num_data)
    return (None if idx is None else idx[j]), kernel_keys[j]


def minibatch_indices(key, step, *, batch_size: int, num_data: int, num_steps: int) -> jax.Array:
    """The minibatch indices the driver uses at step ``step`` of the chain whose key is ``key``.

    Args:
        key: the chain's key, ``jax.random.split(run_key, num_chains)[c]`` for chain c (module docstring).
        step: t, counted from 0 (a Python int or a traced integer, e.g. the transform's ``state.step``).
        batch_size: the run's minibatch size m.
        num_data: n.
        num_steps: the run's number of steps (it sets the RNG block, ``min(RNG_BLOCK, num_steps)``).

    Returns:
        ``(batch_size,)`` int indices into the data, uniform with replacement; ``arange(n)`` when
        ``batch_size == num_data`` (the driver then uses the whole data set, in order). Take the batch with
        ``jax.tree_util.tree_map(lambda a: a[idx], data)``. Each call draws the indices of the whole RNG
        block and keeps one row, as cheap as the driver's draw only for small blocks and batches.

    Example:
        >>> import jax
        >>> from slt.samplers import minibatch_indices
        >>> key = jax.random.split(jax.random.key(0), 4)[2]  # chain 2 of a 4-chain run with key 0
        >>> idx = minibatch_indices(key, 7, batch_size=32, num_data=200, num_steps=1000)
        >>> idx.shape, bool((idx >= 0).all() & (idx < 200).all())
        ((32,), True)
        >>> full = minibatch_indices(key, 7, batch_size=200, num_data=200, num_steps=1000)
        >>> full.tolist() == list(range(200))  # a full batch is the data in order
        True
    """
    batch_size = positive_int(batch_size, "batch_size")
    num_data = positive_int(num_data, "num_data")
    if batch_size > num_data:
        raise ValueError(f"`batch_size` ({batch_size}) must be at most `num_data` ({num_data}).")
    block = _block(num_steps)
    if batch_size == num_data:
        return jnp.arange(num_data)
    return _step_keys(as_key(key), step, block, batch_size, num_data)[0]


# --------------------------------------------------------------------------------------- the transforms
def _f32(value):
    """Hyperparameters as the driver passes them to the kernels: float32 scalars."""
    return jnp.asarray(value, dtype=jnp.float32)


def _start(key) -> tuple[jax.Array, jax.Array]:
    return as_key(key), jnp.zeros((), dtype=int)


def _noise(state, params, block: int):
    kernel_key = _step_keys(state.key, state.step, block)[1]
    return normal_like(kernel_key, params)


def sgld_transform(
    step_size, *, nbeta, localization, center: PyTree, key, num_steps: int
) -> optax.GradientTransformation:
    r"""SGLD (:mod:`slt.samplers.sgld`) as an optax transformation whose chain is the driver's.

    ``update(grads, state, params)`` takes :math:`g = \nabla L_B(w)`, the gradient of the minibatch loss at
    ``params`` (the minibatch from :func:`minibatch_indices` reproduces the driver's chain), and returns
    :math:`-\frac\varepsilon2[n\beta g + \gamma(w - w^*)] + \sqrt\varepsilon\,\xi_t` with :math:`\xi_t` drawn
    from the driver's kernel key of step t (``state.step``); apply it with ``optax.apply_updates``.

    Args:
        step_size: ε, the noise variance per step.
        nbeta: nβ (see :func:`slt.posterior.default_nbeta`).
        localization: γ.
        center: w*, the same structure as the parameters.
        key: the chain's key (a ``jax.random.key``): ``jax.random.split(key, num_chains)[c]`` for chain c of
            a driver run with key ``key``.
        num_steps: the run's number of steps: it sets the driver's RNG block.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from slt.samplers import sgld_transform
        >>> def loss(w):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> tx = sgld_transform(0.02, nbeta=10.0, localization=1.0, center=jnp.zeros(2), key=jax.random.key(0),
        ...                num_steps=4000)
        >>> def step(carry, _):
        ...     params, state = carry
        ...     value, grads = jax.value_and_grad(loss)(params)
        ...     updates, state = tx.update(grads, state, params)
        ...     return (optax.apply_updates(params, updates), state), value
        >>> (params, state), losses = jax.lax.scan(step, (jnp.zeros(2), tx.init(jnp.zeros(2))), length=4000)
        >>> int(state.step), bool(abs(10.0 * losses[1000:].mean() - 10 / 11) < 0.2)
        (4000, True)
    """
    block = _block(num_steps)
    step_size, nbeta, localization = _f32(step_size), _f32(nbeta), _f32(localization)
    chain_key, zero = _start(key)

    def init(params) -> SGLDTransformState:
        del params
        return SGLDTransformState(chain_key, zero)

    def update(grads, state: SGLDTransformState, params=None):
        if params is None:
            raise ValueError(NEEDS_PARAMS.format(name="sgld_transform"))
        noise = _noise(state, params, block)
        scale = jnp.sqrt(step_size)

        grad = potential_gradient(grads, params, center, nbeta, localization)

        def one(g, w, z):  # the kernel's operations, in its order (slt.samplers.sgld)
            return (scale * z - 0.5 * step_size * g).astype(w.dtype)

        updates = jax.tree_util.tree_map(one, grad, params, noise)
        return updates, SGLDTransformState(state.key, state.step + 1)

    return optax.GradientTransformation(init, update)


def rmsprop_sgld_transform(
    step_size, *, nbeta, localization, center: PyTree, key, num_steps: int, alpha=0.99, eps=0.1
) -> optax.GradientTransformation:
    r"""RMSprop-SGLD (:mod:`slt.samplers.rmsprop_sgld`) as an optax transformation whose chain is the driver's.

    As :func:`sgld_transform`, with the running mean square :math:`V \leftarrow \alpha V + (1-\alpha) g^2` of
    the loss gradient ``grads`` (before it is used, no bias correction) in the state, and the update
    :math:`-\frac\varepsilon2 P[n\beta g + \gamma(w - w^*)] + \sqrt{\varepsilon P}\,\xi_t`,
    :math:`P = 1/(\sqrt V + \delta)`. ``alpha`` is α, ``eps`` is δ (not the step size).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from slt.samplers import rmsprop_sgld_transform
        >>> def loss(w):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> tx = rmsprop_sgld_transform(0.02, nbeta=10.0, localization=1.0, center=jnp.zeros(2), key=jax.random.key(0),
        ...                        num_steps=4000, alpha=0.99, eps=0.1)
        >>> def step(carry, _):
        ...     params, state = carry
        ...     value, grads = jax.value_and_grad(loss)(params)
        ...     updates, state = tx.update(grads, state, params)
        ...     return (optax.apply_updates(params, updates), state), value
        >>> (params, state), losses = jax.lax.scan(step, (jnp.zeros(2), tx.init(jnp.zeros(2))), length=4000)
        >>> int(state.step), bool(jnp.all(state.square_avg > 0)), bool(jnp.all(jnp.isfinite(losses)))
        (4000, True, True)
    """
    block = _block(num_steps)
    step_size, nbeta, localization = _f32(step_size), _f32(nbeta), _f32(localization)
    alpha, eps = _f32(alpha), _f32(eps)
    chain_key, zero = _start(key)

    def init(params) -> RMSpropSGLDTransformState:
        # V is kept in at least float32, as in the kernel
        square_avg = jax.tree_util.tree_map(
            lambda w: jnp.zeros(jnp.shape(w), jnp.promote_types(jnp.result_type(w), jnp.float32)), params
        )
        return RMSpropSGLDTransformState(chain_key, zero, square_avg)

    def update(grads, state: RMSpropSGLDTransformState, params=None):
        if params is None:
            raise ValueError(NEEDS_PARAMS.format(name="rmsprop_sgld_transform"))
        noise = _noise(state, params, block)
        square_avg = jax.tree_util.tree_map(
            lambda v, g: alpha * v + (1 - alpha) * jnp.square(g.astype(v.dtype)), state.square_avg, grads
        )

        grad = potential_gradient(grads, params, center, nbeta, localization)

        def one(g, w, v, z):
            precond = 1 / (jnp.sqrt(v) + eps)
            return (jnp.sqrt(step_size * precond) * z - 0.5 * step_size * precond * g).astype(w.dtype)

        updates = jax.tree_util.tree_map(one, grad, params, square_avg, noise)
        return updates, RMSpropSGLDTransformState(state.key, state.step + 1, square_avg)

    return optax.GradientTransformation(init, update)


def sghmc_transform(
    step_size, *, nbeta, localization, center: PyTree, key, num_steps: int, friction=0.1
) -> optax.GradientTransformation:
    r"""SGHMC (:mod:`slt.samplers.sghmc`) as an optax transformation whose chain is the driver's.

    The state carries the momentum :math:`v \leftarrow (1-\alpha) v - \frac\varepsilon2[n\beta g + \gamma(w -
    w^*)] + \sqrt{\alpha\varepsilon}\,\xi_t` (α = ``friction``), and the update is the new :math:`v`: the
    kernel's position step ``w + v`` is exactly ``optax.apply_updates``, so with the same gradients the chain
    is the driver's bit for bit.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from slt.samplers import sghmc_transform
        >>> def loss(w):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> tx = sghmc_transform(0.02, nbeta=10.0, localization=1.0, center=jnp.zeros(2), key=jax.random.key(0),
        ...                 num_steps=4000, friction=0.1)
        >>> def step(carry, _):
        ...     params, state = carry
        ...     value, grads = jax.value_and_grad(loss)(params)
        ...     updates, state = tx.update(grads, state, params)
        ...     return (optax.apply_updates(params, updates), state), value
        >>> (params, state), losses = jax.lax.scan(step, (jnp.zeros(2), tx.init(jnp.zeros(2))), length=4000)
        >>> int(state.step), bool(abs(10.0 * losses[1000:].mean() - 10 / 11) < 0.2)
        (4000, True)
    """
    block = _block(num_steps)
    step_size, nbeta, localization, friction = _f32(step_size), _f32(nbeta), _f32(localization), _f32(friction)
    chain_key, zero = _start(key)

    def init(params) -> SGHMCTransformState:
        return SGHMCTransformState(chain_key, zero, jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(grads, state: SGHMCTransformState, params=None):
        if params is None:
            raise ValueError(NEEDS_PARAMS.format(name="sghmc_transform"))
        noise = _noise(state, params, block)
        scale = jnp.sqrt(friction * step_size)

        grad = potential_gradient(grads, params, center, nbeta, localization)

        def one(v, g, z):
            return ((1 - friction) * v - 0.5 * step_size * g + scale * z).astype(v.dtype)

        momentum = jax.tree_util.tree_map(one, state.momentum, grad, noise)
        return momentum, SGHMCTransformState(state.key, state.step + 1, momentum)

    return optax.GradientTransformation(init, update)
