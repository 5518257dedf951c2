r"""The No-U-Turn sampler (Hoffman & Gelman, JMLR 15, 2014) on the full-data local posterior, adapting in-chain.

Each step is one NUTS transition for :math:`\exp(-U)`,
:math:`U(w) = n\beta L_n(w) + \frac\gamma2\lVert w - w^*\rVert^2`: momentum drawn from the mass matrix,
a leapfrog trajectory doubled in a random direction until it turns back on itself (or after
``max_tree_depth`` doublings, :math:`2^{\text{depth}} - 1` leapfrog steps), and a draw from the trajectory
(multinomial, biased to its last doubling). The chain leaves :math:`\exp(-U)` exactly invariant: its only
error is Monte-Carlo error. It is the exact ground truth behind :func:`slt.ground_truth.nuts_llc`.

**Warmup inside the chain.** The first ``num_warmup`` steps adapt the step size and the mass matrix as Stan
does (Stan Reference Manual, "HMC algorithm parameters"): an initial fast window of dual averaging of the
step size towards ``target_accept_prob`` (Nesterov; Hoffman & Gelman Sec. 3.2), slow windows doubling in
length in which the (diagonal, or with ``dense_mass`` dense) covariance of the positions is also estimated
(Welford, regularized towards :math:`10^{-3} I`) and becomes the inverse mass matrix at the window's end,
and a final fast window. After the last warmup step the step size is the dual-averaging average and nothing
adapts any more. The adaptation state is part of the chain state, so warmup is simply the first
``num_warmup`` steps of a driver run (its burn-in): it vmaps over chains, survives chunking and store resume,
and uses only the driver's per-step keys.

One deliberate difference: when a slow window ends, dual averaging restarts at the window's average step size
:math:`\bar\varepsilon` *and shrinks towards it* (:math:`\mu = \log\bar\varepsilon`); Hoffman & Gelman's
:math:`\mu = \log(10\,\varepsilon_0)`, which favours larger steps, is kept for the first window only, whose
start ``step_size`` is uninformed. Stan and NumPyro restart from a heuristic step (one leapfrog step accepted
with probability 0.8) and blackjax from :math:`\bar\varepsilon`, both with :math:`\mu = \log(10\,\varepsilon)`.
Dual averaging's iterate is :math:`\mu - \sqrt t\,\bar H_t/\gamma` (:math:`\bar H_t` the mean of target minus
acceptance, γ = 0.05): with a high ``target_accept_prob`` the acceptance misses its target by only ~0.01, too
little to bring the step down by a factor 10 within the 50-step final window, whose average step then comes
out too large, and the chain diverges often. Measured on the normal crossing (λ = 1/2) at target 0.99 with 500
warmup steps and 4 chains (``tests/test_ground_truth.py``), runs with more than 0.1% divergent kept draws: 0
of 32 keys with this restart, 2 of 32 with blackjax's, 4 of 22 with Stan's, 2 of 32 with NumPyro's NUTS (and
the worst run had 22 divergent draws in 32,000, against 397 with blackjax's restart).

**Implementation.** The transition is blackjax's ``blackjax.mcmc.nuts.build_kernel()`` (iterative NUTS with
multinomial sampling and the generalized U-turn criterion); the warmup is composed, one step at a time, from
blackjax's public building blocks of its Stan window adaptation (``build_schedule``,
``dual_averaging_adaptation``, ``mass_matrix_adaptation``), which its ``window_adaptation`` otherwise runs as
a separate loop before sampling. Why blackjax and not NumPyro's ``hmc(..., algo="NUTS")``: blackjax's kernel is
a pure ``kernel(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix)`` (the key is passed in, the
log density, hence the data, is an argument of each step, the tuning parameters are explicit), which is exactly
our ``step(rng_key, state, batch)``; NumPyro keeps the key in its state and its ``sample_kernel`` reads settings
that ``init_kernel`` stores in closure variables, so it only works when one closure does both, which the
driver (one factory call to initialize, another per compiled chunk) does not give.

**The state caches nothing that needs data.** ``init(position)`` gets no data; each step evaluates
:math:`L_n` and :math:`\nabla U` where the chain stands, in one forward and backward pass, before building
the trajectory. That is one gradient per step more than a kernel that caches them (a small fraction of the
:math:`2^{\text{depth}}-1` leapfrog gradients of a step), and it buys a data-free ``init``, the exact
:math:`L_n(w_t)` for ``info.loss`` (not recovered from :math:`U` by subtraction) and no cache to keep
consistent. (A cache filled lazily on the first step would cost the same under ``vmap``, where a per-chain
``cond`` evaluates both branches.)

Full batch only: the Metropolis correction is exact only on the exact potential, and every step must see the
same data. Settings that change the compiled program are static fields of the factory :class:`NUTS`
(``num_warmup``, ``max_tree_depth``, ``dense_mass``; hashable by value, so equal settings share one
compilation); ``step_size`` (the *initial* step size of the adaptation, the step size itself when
``num_warmup = 0``) and ``target_accept_prob`` are traced hyperparameters. The registered ``"nuts"`` is
``NUTS()``: 1,000 warmup steps, depth 10, diagonal mass matrix; run it with at least ``num_warmup`` steps
of burn-in.

``info``: ``loss`` (:math:`L_n(w_t)` where the step starts), ``accept_prob`` (NUTS's mean acceptance
statistic over the trajectory, which the step-size adaptation drives to ``target_accept_prob``; not a
Metropolis acceptance rate), ``num_steps`` (leapfrog steps of the trajectory), ``diverging`` (the energy
error exceeded 1000) and ``step_size`` (the step size of this step). Example: :class:`NUTS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from slt.posterior import LocalPosterior
from slt.samplers._registry import SamplerSpec, register
from slt.samplers.base import SamplingAlgorithm

__all__ = ["NUTS", "NUTSState", "NUTSInfo", "nuts"]


class NUTSState(NamedTuple):
    position: Any
    count: jax.Array  # steps taken (int32): the first num_warmup adapt
    step_size: jax.Array  # the step size of the next step
    inverse_mass_matrix: jax.Array  # of the next step: (d,) diagonal or (d, d) dense, over the flattened position
    step_size_adaptation: Any  # blackjax's DualAveragingAdaptationState
    mass_matrix_adaptation: Any  # blackjax's MassMatrixAdaptationState (Welford estimate of the current window)


class NUTSInfo(NamedTuple):
    loss: jax.Array  # L_n(w_t) where the step started
    accept_prob: jax.Array  # mean acceptance statistic over the trajectory
    num_steps: jax.Array  # leapfrog steps
    diverging: jax.Array
    step_size: jax.Array  # the step size this step used


def _cast(tree, dtype):
    """Floating leaves to ``dtype``, integer leaves to int32: a fixed carry type for ``lax.scan``."""

    def one(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        if jnp.issubdtype(x.dtype, jnp.integer):
            return x.astype(jnp.int32)
        return x

    return jax.tree_util.tree_map(one, tree)


def _select(pred, on_true, on_false):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


@dataclasses.dataclass(frozen=True)
class NUTS:
    """The NUTS factory with its static settings: ``NUTS(num_warmup, max_tree_depth, dense_mass)(posterior,
    step_size=1.0, target_accept_prob=0.8) -> SamplingAlgorithm`` (module docstring).

    Attributes:
        num_warmup: the first steps of every chain, which adapt the step size and the mass matrix (Stan's
            windows; fewer than 20: step size only). 0: no adaptation, ``step_size`` is used as given.
        max_tree_depth: at most this many trajectory doublings, :math:`2^{\\text{depth}} - 1` leapfrog steps.
        dense_mass: adapt a dense (d × d) mass matrix instead of a diagonal one (only for small d).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from slt.posterior import LocalPosterior
        >>> posterior = LocalPosterior(lambda w, f, b: 0.5 * jnp.sum(w**2), jnp.zeros(2), None, 10.0, 1.0)
        >>> algorithm = NUTS(num_warmup=50)(posterior, step_size=0.1)
        >>> def body(state, key):
        ...     return algorithm.step(key, state, None)  # this loss needs no data
        >>> keys = jax.random.split(jax.random.key(0), 80)
        >>> state, info = jax.lax.scan(body, algorithm.init(jnp.zeros(2)), keys)
        >>> int(state.count), info._fields
        (80, ('loss', 'accept_prob', 'num_steps', 'diverging', 'step_size'))
        >>> fixed = bool(jnp.all(info.step_size[50:] == info.step_size[50]))
        >>> bool(info.step_size[0] == 0.1), fixed  # adapted during the warmup, then fixed
        (True, True)
        >>> from slt.samplers import nuts
        >>> nuts == NUTS(), nuts.num_warmup  # the registered "nuts"
        (True, 1000)
    """

    num_warmup: int = 1000
    max_tree_depth: int = 10
    dense_mass: bool = False

    def __post_init__(self):
        for name, low in (("num_warmup", 0), ("max_tree_depth", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.dense_mass, (bool, np.bool_)):
            raise ValueError(f"`dense_mass` must be a bool; got {self.dense_mass!r}.")
        object.__setattr__(self, "dense_mass", bool(self.dense_mass))

    def __call__(self, posterior: LocalPosterior, step_size=1.0, target_accept_prob=0.8) -> SamplingAlgorithm:
        from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
        from blackjax.adaptation.step_size import dual_averaging_adaptation
        from blackjax.adaptation.window_adaptation import build_schedule
        from blackjax.mcmc import nuts as blackjax_nuts
        from blackjax.mcmc.hmc import HMCState

        num_warmup, max_tree_depth = self.num_warmup, self.max_tree_depth
        kernel = blackjax_nuts.build_kernel()
        da_init, da_update, da_final = dual_averaging_adaptation(target_accept_prob)
        mm_init, mm_update, mm_final = mass_matrix_adaptation(not self.dense_mass)
        # Stan's windows, one row per warmup step: (0 fast | 1 slow, last step of a slow window). A constant of
        # the program, also when the factory is called while tracing (the driver does).
        with jax.ensure_compile_time_eval():
            schedule = np.asarray(build_schedule(num_warmup), np.int32).reshape(num_warmup, 2)

        def log_density_and_loss(position, batch):
            """-U(w) and L(w) from one forward pass; U as :meth:`LocalPosterior.potential`."""
            loss = posterior.loss(position, posterior.frozen, batch)
            sq = sum(
                jnp.sum(jnp.square(w - c))
                for w, c in zip(jax.tree_util.tree_leaves(position), jax.tree_util.tree_leaves(posterior.center))
            )
            return -(posterior.nbeta * loss + 0.5 * posterior.localization * sq), loss

        def init(position) -> NUTSState:
            flat, _ = ravel_pytree(position)
            dtype = flat.dtype
            step = jnp.asarray(step_size, dtype)
            mm = _cast(mm_init(flat.size), dtype)
            count = jnp.zeros((), jnp.int32)
            return NUTSState(position, count, step, mm.inverse_mass_matrix, _cast(da_init(step), dtype), mm)

        def adapt(state: NUTSState, position, accept_prob) -> NUTSState:
            """One warmup step of Stan's adaptation, after the transition to ``position``; past warmup, none."""
            t = jnp.minimum(state.count, num_warmup - 1)
            slow, window_end = jnp.asarray(schedule[:, 0])[t] == 1, jnp.asarray(schedule[:, 1])[t] == 1
            dtype = state.step_size.dtype
            da = _cast(da_update(state.step_size_adaptation, accept_prob), dtype)
            mm = state.mass_matrix_adaptation
            mm = _select(slow, _cast(mm_update(mm, position), dtype), mm)  # slow windows: estimate the covariance
            # End of a slow window: the window's covariance becomes the mass matrix, and dual averaging restarts
            # at the window's average step size, shrinking towards it (mu; module docstring).
            mm = _select(window_end, _cast(mm_final(mm), dtype), mm)
            average = da_final(da)
            restart = da_init(average)._replace(mu=jnp.log(average))
            da = _select(window_end, _cast(restart, dtype), da)
            last = state.count == num_warmup - 1  # from here on: the averaged step size, fixed
            step = jnp.where(last, da_final(da), jnp.exp(da.log_step_size)).astype(dtype)
            adapted = state._replace(
                position=position,
                step_size=step,
                inverse_mass_matrix=mm.inverse_mass_matrix,
                step_size_adaptation=da,
                mass_matrix_adaptation=mm,
            )
            return _select(state.count < num_warmup, adapted, state._replace(position=position))

        def step(rng_key, state: NUTSState, batch):
            (log_density, loss), grad = jax.value_and_grad(log_density_and_loss, has_aux=True)(state.position, batch)
            proposal, info = kernel(
                rng_key,
                HMCState(state.position, log_density, grad),
                lambda w: log_density_and_loss(w, batch)[0],
                state.step_size,
                state.inverse_mass_matrix,
                max_num_doublings=max_tree_depth,
            )
            accept_prob = info.acceptance_rate
            if num_warmup:
                new_state = adapt(state, proposal.position, accept_prob)
            else:
                new_state = state._replace(position=proposal.position)
            new_state = new_state._replace(count=state.count + 1)
            info = NUTSInfo(loss, accept_prob, info.num_integration_steps, info.is_divergent, state.step_size)
            return new_state, info

        return SamplingAlgorithm(init, step)


nuts = NUTS()

# Exact only on the exact potential: estimate_llc defaults batch_size to n and rejects a smaller one. The warmup
# adapts the step size: ``step_size`` is only where it starts.
register(SamplerSpec("nuts", nuts, full_batch_only=True, adaptive_warmup=True))
