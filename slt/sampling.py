"""``run_chains``: every chain of a run in one jitted computation.

Layout of the computation: ``lax.scan`` over steps, and inside each step the sampler kernel ``vmap``-ed over
chains. Each chain draws its own minibatch on device at every step (indices uniform with replacement, so
:math:`L_B` is an unbiased estimate of :math:`L_n`), and records two scalars per step: the minibatch loss
at its current position, :math:`L_B(w_t)`, and the loss at w* on the *same* minibatch, :math:`L_B(w^*)`,
read from per-example losses at w* computed once before sampling. Nothing else crosses to the host during
the run, except an optional progress tick every 1% of the steps.

Randomness: the run key is split into one key per chain. Steps run in blocks of ``RNG_BLOCK`` (or fewer):
block ``b`` of a chain uses ``fold_in(chain_key, b)``, split into a key that draws the minibatch indices of
all the block's steps in one call and a key split into one kernel key per step. Drawing per block rather
than per step matters: on CPU the random numbers dominate the cost of a small model's SGLD step. The same
key gives the same numbers bit for bit, independent of progress reporting and of how the run is batched.
"""

from __future__ import annotations

import functools
import itertools
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slt.posterior import LocalPosterior
from slt.samplers import get_sampler
from slt.targets import Target

__all__ = ["ChainTrace", "run_chains", "run_grid", "per_example_losses", "as_key"]

PyTree = Any


class ChainTrace(NamedTuple):
    """What a run records, each array of shape ``(num_chains, num_steps)``; plus the final state."""

    loss: np.ndarray  # L_B(w_t)
    loss_at_center: np.ndarray  # L_B(w*) on the same minibatch
    final_state: Any  # after the last RNG block (up to RNG_BLOCK - 1 steps past num_steps)
    info: dict  # the kernel's other per-step info fields (e.g. MALA's acceptance), same shape


def as_key(key: Any, argname: str = "key") -> jax.Array:
    """Accept a typed ``jax.random.key`` (preferred) or a legacy ``PRNGKey`` uint32 array."""
    if key is None:
        raise ValueError(f"`{argname}` is required: pass jax.random.key(seed); there is no default key.")
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"`{argname}` must be a single key (shape ()); got shape {key.shape}.")
        return key
    arr = np.asarray(key)
    if arr.dtype == np.uint32 and arr.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(arr))
    raise ValueError(f"`{argname}` must be a jax.random.key(seed); got {type(key).__name__}.")


# --------------------------------------------------------------------------------- losses at the centre
@functools.partial(jax.jit, static_argnames=("loss", "chunk_size"))
def _per_example_losses(loss, position, frozen, data, chunk_size):
    def one(example):
        batch = jax.tree_util.tree_map(lambda x: x[None], example)
        return loss(position, frozen, batch)

    return jax.lax.map(one, data, batch_size=chunk_size)


def per_example_losses(target: Target, position: PyTree | None = None, chunk_size: int = 1024) -> np.ndarray:
    """Per-example losses ``loss(w, [x_i])`` for every example, vectorized in chunks (one compile).

    Used for the loss at w* on the full data set (its mean) and for the paired minibatch estimate.
    """
    position = target.position if position is None else position
    chunk_size = int(min(chunk_size, target.num_data))
    out = _per_example_losses(target.loss, position, target.frozen, target.data, chunk_size)
    return np.asarray(out)


# --------------------------------------------------------------------------------------------- progress
_BARS: dict[int, Any] = {}
_BAR_IDS = itertools.count()
_BAR_LOCK = threading.Lock()


def _progress_tick(bar_id, step):
    with _BAR_LOCK:
        bar = _BARS.get(int(bar_id))
        if bar is not None:
            step = min(int(step) + 1, bar.total)
            if step > bar.n:
                bar.update(step - bar.n)


# ------------------------------------------------------------------------------------------- the driver
_STATIC = ("loss", "sampler", "num_chains", "num_steps", "batch_size", "progress_every")

RNG_BLOCK = 100  # steps whose minibatch indices and kernel keys are drawn in one call


def _sample(
    loss,
    sampler,
    num_chains,
    num_steps,
    batch_size,
    progress_every,
    center,
    frozen,
    data,
    example_losses_at_center,
    key,
    nbeta,
    localization,
    sampler_params,
    bar_id,
    init_position=None,
):
    """One run: returns ``(info, losses_at_center, final_state)``; ``info`` is the kernel's info pytree with
    every leaf of shape ``(num_chains, num_steps)`` (``info.loss`` is :math:`L_B(w_t)`). The chains start
    at w* (``center``), or at ``init_position`` (leaves with a leading chain axis) when given; the
    localization always pulls towards ``center``."""
    num_data = example_losses_at_center.shape[0]
    full_batch = batch_size == num_data
    posterior = LocalPosterior(loss, center, frozen, nbeta, localization)
    algorithm = sampler(posterior, **sampler_params)
    chain_keys = jax.random.split(key, num_chains)
    if init_position is None:
        init_state = jax.vmap(lambda _: algorithm.init(center))(jnp.arange(num_chains))
    else:
        init_state = jax.vmap(algorithm.init)(init_position)
    full_loss_at_center = jnp.mean(example_losses_at_center)

    block = min(RNG_BLOCK, num_steps)
    num_blocks = -(-num_steps // block)  # the last block may run past num_steps; those steps are dropped

    def block_randomness(chain_key, b):
        index_key, step_key = jax.random.split(jax.random.fold_in(chain_key, b))
        idx = None if full_batch else jax.random.randint(index_key, (block, batch_size), 0, num_data)
        return idx, jax.random.split(step_key, block)

    def chain_step(state, idx, kernel_key):
        if full_batch:
            batch, loss_at_center = data, full_loss_at_center
        else:
            batch = jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data)
            loss_at_center = jnp.mean(example_losses_at_center[idx])
        state, info = algorithm.step(kernel_key, state, batch)
        return state, (info, loss_at_center)

    def scan_step(states, xs):
        t, idx, kernel_keys = xs
        if progress_every:
            jax.lax.cond(
                (t + 1) % progress_every == 0,
                lambda: jax.debug.callback(_progress_tick, bar_id, t, ordered=False),
                lambda: None,
            )
        return jax.vmap(chain_step)(states, idx, kernel_keys)

    def scan_block(states, b):
        idx, kernel_keys = jax.vmap(block_randomness, in_axes=(0, None))(chain_keys, b)
        # (chains, block, ...) -> (block, chains, ...) for the inner scan over steps
        steps = b * block + jnp.arange(block)
        xs = (steps, None if idx is None else idx.swapaxes(0, 1), kernel_keys.swapaxes(0, 1))
        return jax.lax.scan(scan_step, states, xs)

    final_state, (info, losses_at_center) = jax.lax.scan(scan_block, init_state, jnp.arange(num_blocks))

    def per_chain(x):  # (blocks, block, chains, ...) -> (chains, steps, ...)
        x = x.reshape((num_blocks * block, num_chains) + x.shape[3:])[:num_steps]
        return jnp.moveaxis(x, 0, 1)

    return jax.tree_util.tree_map(per_chain, info), per_chain(losses_at_center), final_state


_run = functools.partial(jax.jit, static_argnames=_STATIC)(_sample)

# Arguments of ``_sample`` that ``_run_batched`` can give a leading batch axis.
BATCHABLE = ("center", "frozen", "example_losses_at_center", "key", "nbeta", "localization", "sampler_params")


@functools.partial(jax.jit, static_argnames=_STATIC + ("batched",))
def _run_batched(
    loss,
    sampler,
    num_chains,
    num_steps,
    batch_size,
    progress_every,
    center,
    frozen,
    data,
    example_losses_at_center,
    key,
    nbeta,
    localization,
    sampler_params,
    bar_id,
    batched,
    init_position=None,
):
    """``_sample`` vmapped over a leading axis of the arguments named in ``batched`` (a subset of
    :data:`BATCHABLE`), all in one jit: checkpoints of a trajectory (centres, frozen leaves, per-example
    losses, keys), or cells of a hyperparameter grid (nbeta, localization, sampler parameters, keys). The
    data set is never batched. Every output gains that leading axis."""
    unknown = set(batched) - set(BATCHABLE)
    if unknown:
        raise ValueError(f"cannot batch over {sorted(unknown)}; batchable: {BATCHABLE}")
    values = dict(
        center=center,
        frozen=frozen,
        example_losses_at_center=example_losses_at_center,
        key=key,
        nbeta=nbeta,
        localization=localization,
        sampler_params=sampler_params,
    )
    names = list(values)

    def one(*args):
        kw = dict(zip(names, args))
        return _sample(
            loss,
            sampler,
            num_chains,
            num_steps,
            batch_size,
            progress_every,
            kw["center"],
            kw["frozen"],
            data,
            kw["example_losses_at_center"],
            kw["key"],
            kw["nbeta"],
            kw["localization"],
            kw["sampler_params"],
            bar_id,
            init_position,
        )

    in_axes = tuple(0 if name in batched else None for name in names)
    return jax.vmap(one, in_axes=in_axes)(*values.values())


def _start_bar(progress: bool, total: int, description: str) -> int:
    bar_id = next(_BAR_IDS)
    if progress:
        from tqdm.auto import tqdm

        with _BAR_LOCK:
            _BARS[bar_id] = tqdm(total=total, desc=description, unit="step")
    return bar_id


def _close_bar(progress: bool, bar_id: int) -> None:
    if progress:
        jax.effects_barrier()
        with _BAR_LOCK:
            bar = _BARS.pop(bar_id)
        bar.update(bar.total - bar.n)
        bar.close()


def _trace(info, losses_at_center, final_state) -> ChainTrace:
    info = (
        {k: np.asarray(v) for k, v in info._asdict().items()}
        if hasattr(info, "_asdict")
        else {"loss": np.asarray(info.loss)}
    )
    loss = info.pop("loss")
    return ChainTrace(loss, np.asarray(losses_at_center), final_state, info)


def _float_params(sampler_params: dict | None) -> dict:
    return {k: jnp.asarray(v, dtype=jnp.float32) for k, v in (sampler_params or {}).items()}


def run_chains(
    target: Target,
    *,
    key: jax.Array,
    example_losses_at_center: np.ndarray,
    nbeta: float,
    localization: float,
    num_chains: int,
    num_steps: int,
    batch_size: int,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    progress: bool = False,
    description: str = "sampling",
    init_position=None,
) -> ChainTrace:
    """Run ``num_chains`` chains for ``num_steps`` steps from w* (or from ``init_position``, a pytree like
    the moving parameters with a leading chain axis, e.g. a previous run's ``final_state.position``) and
    record the per-step losses.

    Arguments are assumed validated (see :func:`slt.estimate_llc`). Compiles once per combination of
    loss, sampler, shapes and the static sizes; hyperparameter values (``nbeta``, ``localization``,
    ``sampler_params``) are traced, so changing them does not recompile.
    """
    factory = get_sampler(sampler)
    progress_every = max(1, num_steps // 100) if progress else 0
    bar_id = _start_bar(progress, num_steps, f"{description} ({num_chains} chains)")
    try:
        out = _run(
            target.loss,
            factory,
            num_chains,
            num_steps,
            batch_size,
            progress_every,
            target.position,
            target.frozen,
            target.data,
            jnp.asarray(example_losses_at_center),
            key,
            jnp.float32(nbeta),
            jnp.float32(localization),
            _float_params(sampler_params),
            jnp.int32(bar_id),
            init_position,
        )
        trace = _trace(*out)
    finally:
        _close_bar(progress, bar_id)
    return trace


def run_grid(
    target: Target,
    *,
    keys: jax.Array,
    example_losses_at_center: np.ndarray,
    nbeta,
    localization,
    num_chains: int,
    num_steps: int,
    batch_size: int,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    progress: bool = False,
    description: str = "grid",
    init_position=None,
) -> ChainTrace:
    """Run a grid of G hyperparameter cells × ``num_chains`` chains in **one** jitted computation.

    ``keys`` has shape (G,) (pass the same key G times for common random numbers across cells, which makes
    differences between cells far less noisy). ``nbeta``, ``localization`` and each ``sampler_params``
    value are scalars (shared) or arrays of shape (G,) (one per cell). Every array of the returned
    :class:`ChainTrace` gains a leading axis G. Used for step-size calibration (a grid over ε) and
    thermodynamic integration (a grid over nβ). ``init_position`` (leaves with a leading chain axis): where
    every cell's chains start instead of w* (the same starts for all cells).
    """
    keys = jnp.asarray(keys)
    num_cells = keys.shape[0]
    params = _float_params(sampler_params)
    values = {"nbeta": jnp.asarray(nbeta, jnp.float32), "localization": jnp.asarray(localization, jnp.float32)}
    batched = ["key"]
    for name, value in values.items():
        if value.ndim:
            if value.shape != (num_cells,):
                raise ValueError(f"`{name}` must be a scalar or have shape ({num_cells},); got {value.shape}.")
            batched.append(name)
    shapes = {k: v.shape for k, v in params.items()}
    if any(shapes.values()):
        bad = {k: s for k, s in shapes.items() if s not in ((), (num_cells,))}
        if bad:
            raise ValueError(f"`sampler_params` values must be scalars or shape ({num_cells},); got {bad}.")
        params = {k: jnp.broadcast_to(v, (num_cells,)) for k, v in params.items()}
        batched.append("sampler_params")
    progress_every = max(1, num_steps // 100) if progress else 0
    bar_id = _start_bar(progress, num_steps, f"{description} ({num_cells} cells × {num_chains} chains)")
    try:
        out = _run_batched(
            target.loss,
            get_sampler(sampler),
            num_chains,
            num_steps,
            batch_size,
            progress_every,
            target.position,
            target.frozen,
            target.data,
            jnp.asarray(example_losses_at_center),
            keys,
            values["nbeta"],
            values["localization"],
            params,
            jnp.int32(bar_id),
            batched=tuple(batched),
            init_position=init_position,
        )
        trace = _trace(*out)
    finally:
        _close_bar(progress, bar_id)
    return trace
