r"""The sampling driver: every sampling computation of the package runs through :func:`sample`.

One run is ``num_chains`` chains of a sampler kernel on the localized tempered posterior
(:class:`slt.posterior.LocalPosterior`), optionally batched over a leading *cell* axis of any of the centre
w* (checkpoints), the frozen leaves, the per-example losses at w*, the key, nβ, γ and the sampler's
hyperparameters (grids). The computation is ``jit( scan over RNG blocks ( scan over steps ( vmap over chains
)))``, vmapped over cells, and runs **chunk by chunk**: one compiled chunk of ``blocks_per_chunk`` RNG blocks
is called again and again with the index of its first block. Between chunks the host reports progress,
streams the records to a store and keeps device memory bounded; nothing else crosses to the host.

At every ``thin``-th step (steps 0, thin, 2·thin, …, counted from the start of burn-in) the run records the
kernel's per-step info (``stats``: the minibatch loss and e.g. an acceptance probability) and the requested
observables (:mod:`slt._src.observables`), both evaluated at the position the step starts from, on that
step's minibatch. It also tracks per chain the first step whose loss is not finite (a divergence).

Randomness: ``split(key, num_chains)`` gives one key per chain. Steps run in blocks of ``RNG_BLOCK`` (or
``num_steps`` when shorter): block ``b`` of a chain uses ``fold_in(chain_key, b)``, split into a key that
draws the minibatch indices of the whole block (uniform with replacement) and one kernel key per step.
Drawing per block matters on CPU, where the random numbers dominate a small model's step. The numbers depend
on nothing else: not on the chunking, the chain grouping (``chain_batch_size``), the device count, or an
interruption and resume. The final state is the state after the last block (up to ``RNG_BLOCK - 1`` steps
past ``num_steps``, whose records are dropped).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slt._src import observables as obs
from slt._src import rng
from slt._src.progress import Progress
from slt._src.rng import RNG_BLOCK
from slt._src.validate import as_key
from slt.posterior import LocalPosterior
from slt.samplers import get_sampler
from slt.targets import Target, per_example_losses

__all__ = [
    "Run",
    "ChainTrace",
    "sample",
    "run_chains",
    "run_grid",
    "per_example_losses",
    "as_key",
    "BATCHABLE",
    "RNG_BLOCK",
]

PyTree = Any

CHUNK_STEPS = (1000, 10_000)  # default chunk length: num_steps / 20, clipped to this range
# The chunk length of the stages that run under a deadline (step_size="auto"'s calibration grids, the γ ladder):
# one RNG block, so that a stage overruns its share of time_budget by at most one short chunk where a step is slow
# (a 17,889-parameter transformer: ~80 ms per grid step, so ~8 s per chunk).
DEADLINE_CHUNK_STEPS = 100
BATCHABLE = (
    "center",
    "frozen",
    "example_losses_at_center",
    "key",
    "nbeta",
    "localization",
    "sampler_params",
    "init_position",
)


# ----------------------------------------------------------------------------------------- the program
@dataclasses.dataclass(frozen=True)
class _Program:
    """Everything that decides the compiled code (hashable; a static argument of the jitted functions)."""

    loss: Any
    factory: Any
    batch_size: int
    block: int
    blocks_per_chunk: int
    thin: int
    observables: tuple  # ((name, fn), ...)
    batched: tuple  # names of BATCHABLE arguments with a leading cell axis
    mesh: Any = None


def _cell_axes(program: _Program, dyn: dict) -> dict:
    return {k: (0 if k in program.batched or (k == "chain_keys" and "key" in program.batched) else None) for k in dyn}


def _constrain(program: _Program, tree, lead: int):
    """Shard the chain axis (after ``lead`` cell axes) over the mesh's "chain" axis and one parameter dimension
    over its "model" axis (the largest one it divides)."""
    mesh = program.mesh
    if mesh is None:
        return tree
    from jax.sharding import NamedSharding, PartitionSpec

    names = mesh.axis_names

    def one(x):
        spec: list = [None] * x.ndim
        if x.ndim > lead and "chain" in names:
            spec[lead] = "chain"
        if "model" in names and x.ndim > lead + 1:
            size = mesh.shape["model"]
            dims = [d for d in range(lead + 1, x.ndim) if x.shape[d] % size == 0]
            if dims:
                spec[max(dims, key=lambda d: x.shape[d])] = "model"
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*spec)))

    return jax.tree_util.tree_map(one, tree)


def _init_cell(program: _Program, dyn: dict, init_position):
    posterior = LocalPosterior(program.loss, dyn["center"], dyn["frozen"], dyn["nbeta"], dyn["localization"])
    algorithm = program.factory(posterior, **dyn["sampler_params"])
    num_chains = dyn["chain_keys"].shape[0]
    if init_position is None:
        state = jax.vmap(lambda _: algorithm.init(dyn["center"]))(jnp.arange(num_chains))
    else:
        state = jax.vmap(algorithm.init)(init_position)
    # The first non-finite step, in JAX's default integer type (that of the step counter it is compared with):
    # int32, or int64 in a run under ``jax.enable_x64`` (slt.ground_truth.nuts_llc).
    return state, jnp.full((num_chains,), -1, dtype=int)


def _chunk_cell(program: _Program, carry, first_block, num_blocks, num_steps, dyn: dict):
    """``blocks_per_chunk`` RNG blocks of one cell's chains; blocks at or past ``num_blocks`` are skipped."""
    loss, center, frozen, data = program.loss, dyn["center"], dyn["frozen"], dyn["data"]
    posterior = LocalPosterior(loss, center, frozen, dyn["nbeta"], dyn["localization"])
    algorithm = program.factory(posterior, **dyn["sampler_params"])
    per_example = dyn["example_losses_at_center"]
    num_data = per_example.shape[0]
    full_batch = program.batch_size == num_data
    full_loss_at_center = jnp.mean(per_example)
    chain_keys = jax.random.wrap_key_data(dyn["chain_keys"])
    block, thin = program.block, program.thin

    def block_randomness(chain_key, b):
        return rng.block_randomness(chain_key, b, block=block, batch_size=program.batch_size, num_data=num_data)

    def record(state, info, batch, loss_at_center):
        stats = info._asdict() if hasattr(info, "_asdict") else {"loss": info.loss}
        position = getattr(state, "position", None)
        ctx = obs.DrawContext(position, frozen, center, batch, info.loss, loss_at_center, loss)
        values = {name: jnp.asarray(o(ctx, dyn["observable_data"][name])) for name, o in program.observables}
        return stats, values

    def chain_step(state, idx, kernel_key, t):
        if full_batch:
            batch, loss_at_center = data, full_loss_at_center
        else:
            batch = jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data)
            loss_at_center = jnp.mean(per_example[idx])
        new_state, info = algorithm.step(kernel_key, state, batch)
        if thin == 1:
            rec = record(state, info, batch, loss_at_center)
        else:
            shapes = jax.eval_shape(record, state, info, batch, loss_at_center)
            rec = jax.lax.cond(
                t % thin == 0,
                lambda: record(state, info, batch, loss_at_center),
                lambda: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
            )
        return new_state, info.loss, rec

    def scan_step(states, xs):
        t, idx, kernel_keys = xs
        states, losses, rec = jax.vmap(chain_step, in_axes=(0, 0, 0, None))(states, idx, kernel_keys, t)
        return _constrain(program, states, 0), (losses, rec)

    def run_block(carry, b):
        states, first_bad = carry
        idx, kernel_keys = jax.vmap(block_randomness, in_axes=(0, None))(chain_keys, b)
        steps = b * block + jnp.arange(block)
        xs = (steps, None if idx is None else idx.swapaxes(0, 1), kernel_keys.swapaxes(0, 1))
        states, (losses, rec) = jax.lax.scan(scan_step, states, xs)
        # the first non-finite loss of each chain, once per block rather than per step (a kernel launch per
        # step costs ~10% of a small model's step on a GPU)
        bad = ~jnp.isfinite(losses) & (steps < num_steps)[:, None]
        first_in_block = jnp.where(bad.any(axis=0), steps[jnp.argmax(bad, axis=0)], -1)
        first_bad = jnp.where(first_bad < 0, first_in_block, first_bad)
        return (states, first_bad), rec

    def scan_block(carry, b):
        shapes = jax.eval_shape(run_block, carry, b)[1]
        return jax.lax.cond(
            b < num_blocks,
            lambda: run_block(carry, b),
            lambda: (carry, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)),
        )

    blocks = first_block + jnp.arange(program.blocks_per_chunk)
    carry, rec = jax.lax.scan(scan_block, carry, blocks)

    def per_chain(x):  # (blocks, block, chains, ...) -> (chains, steps of the chunk / thin, ...)
        x = x.reshape((program.blocks_per_chunk * block,) + x.shape[2:])[::thin]
        return jnp.moveaxis(x, 0, 1)

    return carry, jax.tree_util.tree_map(per_chain, rec)


def _init_impl(program, dyn, init_position, init_batched=False):
    if not program.batched:
        carry = _init_cell(program, dyn, init_position)
    elif init_batched:  # each cell its own starts
        axes = _cell_axes(program, dyn)
        carry = jax.vmap(lambda d, p: _init_cell(program, d, p), in_axes=(axes, 0))(dyn, init_position)
    else:
        axes = _cell_axes(program, dyn)
        carry = jax.vmap(lambda d: _init_cell(program, d, init_position), in_axes=(axes,))(dyn)
    return _constrain(program, carry, 1 if program.batched else 0)


def _chunk_impl(program, carry, first_block, num_blocks, num_steps, dyn):
    if not program.batched:
        carry, rec = _chunk_cell(program, carry, first_block, num_blocks, num_steps, dyn)
    else:
        axes = _cell_axes(program, dyn)
        carry, rec = jax.vmap(
            lambda c, d: _chunk_cell(program, c, first_block, num_blocks, num_steps, d), in_axes=(0, axes)
        )(carry, dyn)
    return _constrain(program, carry, 1 if program.batched else 0), rec


_init = jax.jit(_init_impl, static_argnames=("program", "init_batched"))
_chunk = jax.jit(_chunk_impl, static_argnames=("program",))


# --------------------------------------------------------------------------------------------- results
@dataclasses.dataclass
class Run:
    """What :func:`sample` returns. C = chains, R = records (``ceil(num_steps / thin)``); with cells, every
    array gains a leading cell axis G.

    Attributes:
        stats: the kernel's per-step info at each record, each ``(C, R)`` (``stats["loss"]`` is
            :math:`L_{B_t}(w_t)`).
        observables: each ``(C, R, ...)``.
        record_steps: (R,) the step (from the start of burn-in) of each record.
        divergence_step: (C,) the first step whose loss was not finite, -1 if none.
        final_state: the kernel state after the last RNG block (device arrays).
        num_steps, thin, steps_per_chunk, num_chunks: the run's layout.
        wall_time: seconds of the whole call; compile_time: seconds of the first chunk beyond a later one's.
        resumed_chunks: chunks read back from a store instead of being run.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> target = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data)
        >>> per_example = slt.targets.per_example_losses(target)  # the losses at w*, for the paired estimate
        >>> settings = dict(key=jax.random.key(0), example_losses_at_center=per_example, nbeta=slt.default_nbeta(200),
        ...                 localization=1.0, num_chains=2, num_steps=1100, batch_size=200,
        ...                 sampler_params={"step_size": 5e-3})
        >>> run = slt.sample(target, observables={"loss_at_center": "loss_at_center"}, **settings)
        >>> run.loss.shape, run.observables["loss_at_center"].shape, run.num_steps, run.divergence_step.tolist()
        ((2, 1100), (2, 1100), 1100, [-1, -1])
        >>> excess = run.loss - run.observables["loss_at_center"]  # L_B(w_t) - L_B(w*)
        >>> llc = slt.default_nbeta(200) * excess[:, 100:].mean()  # λ̂ after 100 steps of burn-in
        >>> bool(abs(llc - 1.0) < 0.3)
        True
    """

    stats: dict
    observables: dict
    record_steps: np.ndarray
    divergence_step: np.ndarray
    final_state: Any
    num_steps: int
    thin: int
    steps_per_chunk: int
    num_chunks: int
    wall_time: float
    compile_time: float = 0.0
    resumed_chunks: int = 0

    @property
    def loss(self) -> np.ndarray:
        return self.stats["loss"]


def continue_run(first: Run, second: Run) -> Run:
    """One :class:`Run` from ``first`` and ``second``, a run started from ``first.final_state``'s positions:
    records concatenated along the record axis, ``second``'s steps counted on from ``first``'s, the first
    divergence kept, ``second``'s final state. Both must share ``thin`` and the chain (and cell) layout.

    Example:
        >>> import numpy as np
        >>> a = Run({"loss": np.zeros((2, 3))}, {}, np.arange(3), np.array([-1, -1]), None, 3, 1, 3, 1, 1.0)
        >>> b = Run({"loss": np.ones((2, 2))}, {}, np.arange(2), np.array([-1, 1]), None, 2, 1, 2, 1, 0.5)
        >>> ab = continue_run(a, b)
        >>> ab.loss.shape, ab.record_steps.tolist(), ab.divergence_step.tolist(), ab.num_steps, ab.wall_time
        ((2, 5), [0, 1, 2, 3, 4], [-1, 4], 5, 1.5)
    """
    if first.thin != second.thin:
        raise ValueError(f"runs to join must share `thin`; got {first.thin} and {second.thin}.")
    axis = np.ndim(first.divergence_step)  # the record axis: after the (cell and) chain axes

    def cat(x, y):
        return np.concatenate([np.asarray(x), np.asarray(y)], axis=axis)

    bad_first, bad_second = np.asarray(first.divergence_step), np.asarray(second.divergence_step)
    return Run(
        stats=jax.tree_util.tree_map(cat, first.stats, second.stats),
        observables=jax.tree_util.tree_map(cat, first.observables, second.observables),
        record_steps=np.concatenate([first.record_steps, second.record_steps + first.num_steps]),
        divergence_step=np.where(
            bad_first >= 0, bad_first, np.where(bad_second >= 0, bad_second + first.num_steps, -1)
        ),
        final_state=second.final_state,
        num_steps=first.num_steps + second.num_steps,
        thin=first.thin,
        steps_per_chunk=first.steps_per_chunk,
        num_chunks=first.num_chunks + second.num_chunks,
        wall_time=first.wall_time + second.wall_time,
        compile_time=first.compile_time + second.compile_time,
        resumed_chunks=first.resumed_chunks + second.resumed_chunks,
    )


# -------------------------------------------------------------------------------------------- progress
# ------------------------------------------------------------------------------------------ the driver
def _plan(num_steps: int, thin: int, steps_per_chunk: int | None) -> tuple[int, int, int]:
    """``(block, blocks_per_chunk, num_blocks)``; a chunk is a whole number of blocks and of ``thin``."""
    block = min(RNG_BLOCK, num_steps)
    num_blocks = -(-num_steps // block)
    unit = math.lcm(block, thin) // block  # blocks per alignment unit, so every chunk starts on a record
    if steps_per_chunk is None:
        target = int(np.clip(num_steps // 20, *CHUNK_STEPS))
    else:
        if (
            isinstance(steps_per_chunk, bool)
            or not isinstance(steps_per_chunk, (int, np.integer))
            or steps_per_chunk < 1
        ):
            raise ValueError(f"`steps_per_chunk` must be a positive integer; got {steps_per_chunk!r}.")
        target = int(steps_per_chunk)
    blocks = max(unit, unit * round(target / block / unit))
    return block, min(blocks, -(-num_blocks // unit) * unit), num_blocks


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def _num_cells(program: _Program, dyn: dict, init_position) -> int:
    axes = _cell_axes(program, dyn)
    leaves = [x for k, a in axes.items() if a == 0 for x in jax.tree_util.tree_leaves(dyn[k])]
    leaves += jax.tree_util.tree_leaves(init_position)
    return int(np.shape(leaves[0])[0])


def _cells_of(program: _Program, dyn: dict, init_position, init_batched: bool, cells):
    """The program, inputs and starts of some cells: ``cells`` None (all), a slice (a group keeping the cell
    axis) or an index (one cell, in the program of a run without cells)."""
    if cells is None:
        return program, dyn, init_position, init_batched
    axes = _cell_axes(program, dyn)
    take = _take if isinstance(cells, int) else (lambda tree, c: jax.tree_util.tree_map(lambda x: x[c], tree))
    sub = {k: (take(v, cells) if axes[k] == 0 else v) for k, v in dyn.items()}
    init = take(init_position, cells) if init_batched else init_position
    if isinstance(cells, slice):
        return program, sub, init, init_batched
    return dataclasses.replace(program, batched=()), sub, init, False


@jax.jit
def _take(tree, index):
    """Cell ``index`` (traced: one compilation for every cell) of each leaf's leading axis."""
    return jax.tree_util.tree_map(lambda x: x[index], tree)


def _float_params(sampler_params: Mapping | None) -> dict:
    return {k: jnp.asarray(v, dtype=jnp.float32) for k, v in (sampler_params or {}).items()}


def _fetch(tree):
    """Device arrays to numpy, gathering across processes where a run spans several hosts."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:  # every process holds all of it: no collective
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils

            # A collective: every process fetches the same arrays in the same order (the driver's loop does).
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree_util.tree_map(one, tree)


def _place(program: _Program, dyn: dict, lead: int) -> dict:
    """Put the inputs on the mesh: data replicated (or split over a "data" axis), chain keys over "chain"."""
    mesh = program.mesh
    if mesh is None:
        return dyn
    from jax.sharding import NamedSharding, PartitionSpec

    def put(x, spec):
        sharding = NamedSharding(mesh, PartitionSpec(*spec))
        if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global (several processes)
            return jax.device_put(x, sharding)
        # From the host value, which every process holds in full: each process builds only its addressable
        # shards, so this also works for a mesh spanning several processes.
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    out = {}
    for name, value in dyn.items():
        if name == "chain_keys":
            out[name] = put(value, [None] * lead + ["chain"] + [None])
        elif name == "data" and "data" in mesh.axis_names:
            size = mesh.shape["data"]
            out[name] = jax.tree_util.tree_map(
                lambda x, size=size: put(x, ["data" if np.ndim(x) and np.shape(x)[0] % size == 0 else None]), value
            )
        else:
            out[name] = jax.tree_util.tree_map(lambda x: put(x, []), value)
    return out


def sample(
    target: Target,
    *,
    key,
    example_losses_at_center,
    nbeta,
    localization,
    num_chains: int,
    num_steps: int,
    batch_size: int,
    sampler: Any = "sgld",
    sampler_params: Mapping | None = None,
    observables: Mapping | tuple | None = None,
    thin: int = 1,
    center=None,
    frozen=None,
    batched: tuple = (),
    init_position=None,
    steps_per_chunk: int | None = None,
    chain_batch_size: int | None = None,
    cell_batch_size: int | None = None,
    mesh=None,
    store=None,
    store_attrs: Mapping | None = None,
    progress: bool = False,
    description: str = "sampling",
    deadline: float | None = None,
) -> Run:
    """Run the chains; see the module docstring. Arguments are assumed validated by the caller (the public
    estimators), except the driver's own (``thin``, ``steps_per_chunk``, ``chain_batch_size``, ``mesh``).

    Args:
        target: loss, w*, frozen leaves and data. ``center``/``frozen`` override its position/frozen leaves
            (with a leading cell axis when named in ``batched``).
        key: one key, or (G,) keys when ``"key"`` is in ``batched``.
        example_losses_at_center: (n,) per-example losses at w* ((G, n) when batched).
        nbeta, localization, sampler_params: scalars, or (G,) arrays when named in ``batched``.
        observables: name -> spec (:mod:`slt._src.observables`); resolved tuples are accepted too.
        thin: record every ``thin``-th step.
        batched: the names among :data:`BATCHABLE` that carry a leading cell axis.
        init_position: where chains start (leaves with a leading chain axis: the same starts for every cell;
            with ``"init_position"`` in ``batched``, a cell axis first: each cell its own starts); default w*.
        steps_per_chunk: steps per compiled chunk (rounded to whole RNG blocks and ``thin``); default
            ``num_steps / 20`` clipped to [1,000, 10,000].
        chain_batch_size: run the chains in groups of this size, one after another (memory); the same draws.
        cell_batch_size: run the cells in groups of this size, one after another; the same draws. With 1, each
            cell runs in the program of a run without cells (one compilation shared with such runs, e.g. a
            calibration grid's and the run it chooses).
        mesh: a ``jax.sharding.Mesh`` with a ``"chain"`` axis (and optionally ``"model"``, ``"data"``).
        store: a directory: records and the resume point are written after each chunk; a second call with
            the same arguments resumes (see :mod:`slt._src.store`).
        progress: report progress per chunk.
        deadline: a ``time.perf_counter()`` value: no chunk starts after it (the first always runs; the one in
            flight finishes), so the run may stop short: ``Run.num_steps`` is then the steps run, whole chunks,
            the same draws as a full run's first steps. With ``chain_batch_size`` or ``cell_batch_size``, the first
            group decides where every group stops, on its share of the time left after its first chunk (which
            includes compilation). Not with ``store`` (a run stopped short is not a resumable one).

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> target = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data)
        >>> per_example = slt.targets.per_example_losses(target)  # the losses at w*, for the paired estimate
        >>> settings = dict(key=jax.random.key(0), example_losses_at_center=per_example, nbeta=slt.default_nbeta(200),
        ...                 localization=1.0, num_chains=2, num_steps=1100, batch_size=200,
        ...                 sampler_params={"step_size": 5e-3})
        >>> x, y = p.data
        >>> probe = slt.observables.per_sample_loss((x[:5], y[:5]))  # 5 examples' losses at every record
        >>> run = slt.sample(target, observables={"probe": probe}, thin=10, **settings)
        >>> run.stats["loss"].shape, run.observables["probe"].shape, run.record_steps[:3].tolist()
        ((2, 110), (2, 110, 5), [0, 10, 20])
        >>> bool(np.allclose(run.observables["probe"][:, 0], per_example[:5], rtol=1e-5))  # step 0: at w*
        True
    """
    if isinstance(thin, bool) or not isinstance(thin, (int, np.integer)) or thin < 1:
        raise ValueError(f"`thin` must be a positive integer; got {thin!r}.")
    thin = int(thin)
    unknown = set(batched) - set(BATCHABLE)
    if unknown:
        raise ValueError(f"cannot batch over {sorted(unknown)}; batchable: {BATCHABLE}")
    named = obs.resolve(observables) if (observables is None or isinstance(observables, Mapping)) else observables
    if chain_batch_size is not None:
        chain_batch_size = min(_positive_int(chain_batch_size, "chain_batch_size"), num_chains)
    if mesh is not None:  # after the clipping: a chain_batch_size >= num_chains is one group of num_chains
        _check_mesh(mesh, num_chains, chain_batch_size)
    if deadline is not None and store is not None:
        raise ValueError("`deadline` and `store` exclude each other: a run stopped short cannot be resumed.")
    block, blocks_per_chunk, num_blocks = _plan(num_steps, thin, steps_per_chunk)
    num_chunks = -(-num_blocks // blocks_per_chunk)
    program = _Program(
        loss=target.loss,
        factory=get_sampler(sampler),
        batch_size=int(batch_size),
        block=block,
        blocks_per_chunk=blocks_per_chunk,
        thin=thin,
        observables=tuple((name, o.fn) for name, o in named),
        batched=tuple(sorted(set(batched) - {"init_position"})),
        mesh=mesh,
    )
    init_batched = "init_position" in batched and init_position is not None
    keys = jnp.asarray(key) if "key" in batched else key
    if "key" in batched:
        chain_keys = jax.vmap(lambda k: jax.random.key_data(jax.random.split(k, num_chains)))(keys)
    else:
        chain_keys = jax.random.key_data(jax.random.split(as_key(key), num_chains))
    dyn = {
        "center": target.position if center is None else center,
        "frozen": target.frozen if frozen is None else frozen,
        "data": target.data,
        "example_losses_at_center": jnp.asarray(example_losses_at_center),
        "chain_keys": chain_keys,
        "nbeta": jnp.asarray(nbeta, jnp.float32),
        "localization": jnp.asarray(localization, jnp.float32),
        "sampler_params": _float_params(sampler_params),
        "observable_data": {name: o.data for name, o in named},
    }
    groups = [slice(0, num_chains)]
    if chain_batch_size is not None and chain_batch_size < num_chains:
        groups = [slice(s, min(s + chain_batch_size, num_chains)) for s in range(0, num_chains, chain_batch_size)]
    cell_groups: list = [None]  # None: every cell (or no cells) in one program
    if batched and cell_batch_size is not None:
        cell_batch_size = _positive_int(cell_batch_size, "cell_batch_size")
        num_cells = _num_cells(program, dyn, init_position if init_batched else None)
        if cell_batch_size == 1:  # each cell in the program of a run without cells
            cell_groups = list(range(num_cells))
        elif cell_batch_size < num_cells:
            cell_groups = [slice(s, min(s + cell_batch_size, num_cells)) for s in range(0, num_cells, cell_batch_size)]
    if store is not None and len(cell_groups) > 1:
        raise ValueError("`cell_batch_size` and `store` exclude each other; store a grid as one group of cells.")

    writer = None
    if store is not None:
        from slt._src.store import RunStore

        writer = RunStore.open(
            store,
            program=program,
            dyn=dyn,
            num_chains=num_chains,
            num_steps=num_steps,
            groups=groups,
            num_chunks=num_chunks,
            attrs=store_attrs,
            init_position=init_position,
        )

    start = time.perf_counter()
    num_units = len(cell_groups) * len(groups)
    bar = Progress(progress, num_steps * num_units, f"{description} ({num_chains} chains)")
    cell_pieces = []  # per cell group: (records, finals, bads) per chain group, and the group's cell axes
    compile_time = 0.0
    resumed = 0
    unit = 0
    for cells in cell_groups:
        cprogram, cdyn, cinit, cinit_batched = _cells_of(program, dyn, init_position, init_batched, cells)
        clead = 1 if cprogram.batched else 0
        pieces, finals, bads = [], [], []
        for g, rows in enumerate(groups):
            gdyn = dict(cdyn)
            gdyn["chain_keys"] = cdyn["chain_keys"][..., rows, :]
            ginit = (
                None
                if cinit is None
                else jax.tree_util.tree_map(lambda x, r=rows, b=cinit_batched: x[:, r] if b else x[r], cinit)
            )
            gdyn = _place(cprogram, gdyn, clead)
            first_chunk, records = 0, []
            carry = None
            if writer is not None:
                shapes = jax.eval_shape(
                    functools.partial(_init_impl, cprogram, init_batched=cinit_batched), gdyn, ginit
                )
                first_chunk, carry, records = writer.resume(g, jax.tree_util.tree_structure(shapes))
                resumed += first_chunk
            if carry is None:
                carry = _init(cprogram, gdyn, ginit, init_batched=cinit_batched)
            else:
                carry = jax.tree_util.tree_map(jnp.asarray, carry)
            # Chunk c + 1 is dispatched before chunk c's records are copied to the host (and written to the
            # store), so the device never waits for the host between chunks.
            pending = None
            dispatch: list[float] = []

            def finish(c, rec, carry_after, records=records, g=g, done=unit * num_steps):
                rec = _fetch(rec)
                if writer is not None:
                    writer.write(g, c, rec, _fetch(carry_after))
                records.append(rec)
                bar.update(done + min((c + 1) * blocks_per_chunk * block, num_steps))

            for c in range(first_chunk, num_chunks):
                if unit == 0 and deadline is not None and c > first_chunk and time.perf_counter() > deadline:
                    num_chunks = c  # every later group stops here too
                    break
                t0 = time.perf_counter()
                carry, rec = _chunk(cprogram, carry, c * blocks_per_chunk, num_blocks, num_steps, gdyn)
                dispatch.append(time.perf_counter() - t0)  # the first call compiles (synchronously)
                if unit == 0 and c == first_chunk and deadline is not None and num_units > 1:
                    # the first group's share of the time left after compiling: every group runs as long
                    now = time.perf_counter()
                    deadline = now + (deadline - now) / num_units
                if pending is not None:
                    finish(*pending)
                pending = (c, rec, carry)
            if pending is not None:
                finish(*pending)
            if dispatch:  # the first dispatch compiles synchronously; a cached program dispatches in microseconds
                compile_time = max(
                    compile_time, dispatch[0] - (float(np.median(dispatch[1:])) if len(dispatch) > 1 else 0.0)
                )
            pieces.append(records)
            finals.append(carry[0])
            bads.append(_fetch(carry[1]))
            unit += 1
        cell_pieces.append((pieces, finals, bads, clead, cells))
    if writer is not None:
        writer.finish()

    if num_chunks * blocks_per_chunk * block < num_steps:  # the deadline stopped the run
        bar.stop(f"stopped at its deadline after {num_chunks * blocks_per_chunk * block} of {num_steps} steps")
        num_steps = num_chunks * blocks_per_chunk * block
    num_records = -(-num_steps // thin)

    joined_cells = []
    for pieces, finals, bads, clead, cells in cell_pieces:

        def cat_records(*chunks, clead=clead):  # concatenate chunks along the record axis, trim past num_steps
            return np.concatenate(chunks, axis=clead + 1)[(slice(None),) * (clead + 1) + (slice(0, num_records),)]

        per_group = [jax.tree_util.tree_map(cat_records, *records) for records in pieces]
        joined = (
            per_group[0]
            if len(per_group) == 1
            else jax.tree_util.tree_map(lambda *xs, a=clead: np.concatenate(xs, axis=a), *per_group)
        )
        final_state = (
            finals[0]
            if len(finals) == 1
            else jax.tree_util.tree_map(lambda *xs, a=clead: jnp.concatenate(xs, axis=a), *finals)
        )
        bad = np.concatenate(bads, axis=clead)
        if isinstance(cells, int):  # one cell run without a cell axis: give it one
            joined = jax.tree_util.tree_map(lambda x: x[None], joined)
            final_state = jax.tree_util.tree_map(lambda x: x[None], final_state)
            bad = bad[None]
        joined_cells.append((joined, final_state, bad))
    if len(joined_cells) == 1:
        (stats, values), final_state, divergence_step = joined_cells[0]
    else:
        stats, values = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *[j[0] for j in joined_cells])
        final_state = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *[j[1] for j in joined_cells])
        divergence_step = np.concatenate([j[2] for j in joined_cells], axis=0)
    return Run(
        stats=dict(stats),
        observables=dict(values),
        record_steps=np.arange(num_records) * thin,
        divergence_step=divergence_step,
        final_state=final_state,
        num_steps=num_steps,
        thin=thin,
        steps_per_chunk=blocks_per_chunk * block,
        num_chunks=num_chunks,
        wall_time=time.perf_counter() - start,
        compile_time=compile_time,
        resumed_chunks=resumed,
    )


def _check_mesh(mesh, num_chains: int, chain_batch_size: int | None) -> None:
    from jax.sharding import Mesh

    if not isinstance(mesh, Mesh):
        raise ValueError(f"`mesh` must be a jax.sharding.Mesh; got {type(mesh).__name__}.")
    unknown = set(mesh.axis_names) - {"chain", "model", "data"}
    if unknown:
        raise ValueError(f"`mesh` axes must be among 'chain', 'model', 'data'; got {mesh.axis_names}.")
    size = mesh.shape.get("chain", 1)
    if num_chains % size:
        raise ValueError(
            f"`num_chains` ({num_chains}) must be a multiple of the size of the mesh's 'chain' axis ({size}): "
            "each device runs the same number of chains."
        )
    if chain_batch_size is not None and chain_batch_size % size:
        raise ValueError(
            f"`chain_batch_size` ({chain_batch_size}) must be a multiple of the size of the mesh's 'chain' axis "
            f"({size}): each group of chains is split evenly over its devices."
        )


# ------------------------------------------------------------------------- the two common shapes of a run
class ChainTrace(NamedTuple):
    """The losses of a run at every step, each ``(num_chains, num_steps)`` (a leading G for grids)."""

    loss: np.ndarray  # L_B(w_t)
    loss_at_center: np.ndarray  # L_B(w*) on the same minibatch
    final_state: Any  # after the last RNG block
    info: dict  # the kernel's other per-step info fields (e.g. MALA's acceptance), same shape
    divergence_step: np.ndarray | None = None  # (C,) first non-finite loss, -1 if none


LOSS_OBSERVABLES = {"loss_at_center": "loss_at_center"}


def _trace(run: Run) -> ChainTrace:
    info = {k: v for k, v in run.stats.items() if k != "loss"}
    return ChainTrace(run.stats["loss"], run.observables["loss_at_center"], run.final_state, info, run.divergence_step)


def continue_trace(first: ChainTrace, second: ChainTrace, num_steps: int) -> ChainTrace:
    """One :class:`ChainTrace` from ``first`` (``num_steps`` steps) and ``second``, run from ``first.final_state``'s
    positions: steps concatenated on the last axis, the first divergence kept, ``second``'s final state."""
    axis = np.ndim(first.loss) - 1
    bad_first, bad_second = np.asarray(first.divergence_step), np.asarray(second.divergence_step)
    return ChainTrace(
        np.concatenate([np.asarray(first.loss), np.asarray(second.loss)], axis=axis),
        np.concatenate([np.asarray(first.loss_at_center), np.asarray(second.loss_at_center)], axis=axis),
        second.final_state,
        {k: np.concatenate([np.asarray(first.info[k]), np.asarray(second.info[k])], axis=axis) for k in first.info},
        np.where(bad_first >= 0, bad_first, np.where(bad_second >= 0, bad_second + num_steps, -1)),
    )


def run_chains(
    target: Target,
    *,
    key,
    example_losses_at_center,
    nbeta,
    localization,
    num_chains,
    num_steps,
    batch_size,
    sampler="sgld",
    sampler_params=None,
    progress=False,
    description="sampling",
    init_position=None,
    **driver,
) -> ChainTrace:
    """``num_chains`` chains for ``num_steps`` steps from w* (or ``init_position``, leaves with a leading chain
    axis), recording :math:`L_B(w_t)` and :math:`L_B(w^*)` at every step: :func:`sample` with the paired
    losses as observables. Hyperparameter values are traced: changing them does not recompile.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> target = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data)
        >>> per_example = slt.targets.per_example_losses(target)  # the losses at w*, for the paired estimate
        >>> settings = dict(key=jax.random.key(0), example_losses_at_center=per_example, nbeta=slt.default_nbeta(200),
        ...                 localization=1.0, num_chains=2, num_steps=1100, batch_size=200,
        ...                 sampler_params={"step_size": 5e-3})
        >>> trace = slt.run_chains(target, **settings)
        >>> trace.loss.shape, trace.loss_at_center.shape
        ((2, 1100), (2, 1100))
        >>> res = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=5e-3,
        ...                        num_chains=2, num_draws=1000, num_burnin=100)
        >>> bool(np.array_equal(trace.loss[:, 100:], res.loss_trace))  # estimate_llc's chains, bit for bit
        True
    """
    run = sample(
        target,
        key=key,
        example_losses_at_center=example_losses_at_center,
        nbeta=nbeta,
        localization=localization,
        num_chains=num_chains,
        num_steps=num_steps,
        batch_size=batch_size,
        sampler=sampler,
        sampler_params=sampler_params,
        observables=LOSS_OBSERVABLES,
        progress=progress,
        description=description,
        init_position=init_position,
        **driver,
    )
    return _trace(run)


def default_cell_batch_size() -> int | None:
    """Grid cells per program by default: one on CPU, where a step costs about in proportion to the chains it
    moves, so cells together save little time while they compile a program no plain run shares (a grid and the
    run it chooses: 0.54-0.70× the time one by one on small models, 1.01× on a 3k-parameter GPT;
    ``benchmarks/grid_cells.py``); all of them (None) on accelerators, whose step time grows little with the
    chains."""
    return 1 if jax.default_backend() == "cpu" else None


def run_grid(
    target: Target,
    *,
    keys,
    example_losses_at_center,
    nbeta,
    localization,
    num_chains,
    num_steps,
    batch_size,
    sampler="sgld",
    sampler_params=None,
    progress=False,
    description="grid",
    init_position=None,
    init_batched=False,
    **driver,
) -> ChainTrace:
    """A grid of G hyperparameter cells × ``num_chains`` chains.

    On CPU the cells run one after another, each in the program of a run without cells (the one the run that
    a calibration chooses compiles too), elsewhere all in one program: ``cell_batch_size`` (see :func:`sample`)
    defaults to :func:`default_cell_batch_size`. ``keys`` has shape (G,) (the same key G times gives common
    random numbers across cells, which makes differences between cells far less noisy). ``nbeta``,
    ``localization`` and each ``sampler_params`` value are scalars (shared) or arrays of shape (G,). Every array
    of the returned :class:`ChainTrace` gains a leading axis G. ``init_position``: the chains' starts (the same
    for every cell; with ``init_batched``, a leading cell axis: each cell its own, e.g. a previous grid's
    ``final_state.position`` to continue it)."""
    keys = jnp.asarray(keys)
    num_cells = keys.shape[0]
    driver.setdefault("cell_batch_size", default_cell_batch_size())
    params = _float_params(sampler_params)
    values = {"nbeta": jnp.asarray(nbeta, jnp.float32), "localization": jnp.asarray(localization, jnp.float32)}
    batched = ["key"] + (["init_position"] if init_batched and init_position is not None else [])
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
    return run_chains(
        target,
        key=keys,
        example_losses_at_center=example_losses_at_center,
        nbeta=values["nbeta"],
        localization=values["localization"],
        num_chains=num_chains,
        num_steps=num_steps,
        batch_size=batch_size,
        sampler=sampler,
        sampler_params=params,
        batched=tuple(batched),
        progress=progress,
        description=f"{description} ({num_cells} cells)",
        init_position=init_position,
        **driver,
    )
