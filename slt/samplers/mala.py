r"""Metropolis-adjusted Langevin algorithm (Roberts & Tweedie, Bernoulli 2(4), 1996) on the local posterior.

The proposal is one full-batch SGLD step with the SGLD convention for ε,

.. math::

    w' = w - \frac{\varepsilon}{2}\nabla U(w) + \sqrt{\varepsilon}\,\xi, \qquad \xi \sim \mathcal N(0, I),
    \qquad U(w) = n\beta L_n(w) + \frac\gamma2\lVert w - w^*\rVert^2,

so :math:`q(w' \mid w) = \mathcal N(w - \frac\varepsilon2\nabla U(w), \varepsilon I)`, accepted with probability

.. math::

    \min\Big(1,\ \exp\big[U(w) - U(w') + \tfrac12\lVert\xi\rVert^2
        - \tfrac{1}{2\varepsilon}\lVert w - w' + \tfrac\varepsilon2 \nabla U(w')\rVert^2\big]\Big),

the Metropolis–Hastings ratio :math:`p(w') q(w \mid w') / [p(w) q(w' \mid w)]`. The chain leaves
:math:`\exp(-U)` exactly invariant for every ε (no discretization bias): ε trades acceptance against step
length. Same step size as :func:`slt.samplers.sgld`; blackjax's ``mala`` writes the proposal as
:math:`x + h\nabla\log p + \sqrt{2h}\,\xi`, so its ``step_size`` h is ε/2 here. For a Gaussian target
the acceptance falls as :math:`\varepsilon c_\max` grows past about 1 and collapses beyond SGLD's stability
limit :math:`\varepsilon c_\max = 4` (in the tests, d = 3: 0.83 at 1.5, 0.06 at 10); in d dimensions the
optimal acceptance is about 0.57 and ε must shrink like :math:`d^{-1/3}` (Roberts & Rosenthal, JRSS B 60,
1998).
There are no hyperparameters beyond ε.

Full batch only: the correction is exact only for the exact potential, and the state caches
:math:`L(w)` and :math:`\nabla U(w)` from the previous step, so every step must see the same batch
(``estimate_llc`` uses the whole data set for ``"mala"``). Each step costs one ``value_and_grad``, at the
proposal. Since ``init`` gets no data, the first step of a chain only evaluates the potential where it
stands: it does not move, and reports ``acceptance_rate = 1``; discard it with the burn-in.

``info``: ``loss`` (:math:`L_n(w_t)` at the position the step started from), ``acceptance_rate`` (the
min(1, ratio) probability, 0 for a non-finite proposal), ``is_accepted``.

We do not use ``blackjax.mala``: its ``init`` evaluates the log density, which needs the batch that our
``init(position)`` does not get, and its state caches the log density and gradient but not the loss; the
loss would have to be recovered from :math:`U` by subtracting the localization term and dividing by nβ.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slt.posterior import LocalPosterior
from slt.samplers._registry import SamplerSpec, register
from slt.samplers.base import SamplingAlgorithm, normal_like

__all__ = ["MALAState", "MALAInfo", "build_kernel", "mala", "langevin_log_ratio", "acceptance_probability"]


class MALAState(NamedTuple):
    position: Any
    loss: jax.Array  # L(w) at the position (cached from the step that accepted it)
    grad: Any  # ∇U(w)
    initialized: jax.Array  # False until the first step has filled the cache


class MALAInfo(NamedTuple):
    loss: jax.Array  # L(w_t) at the position the step started from
    acceptance_rate: jax.Array  # min(1, Metropolis-Hastings ratio)
    is_accepted: jax.Array


def _squared_norm(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32)))) for x in leaves)


def _squared_distance(posterior: LocalPosterior, position) -> jax.Array:
    return _squared_norm(jax.tree_util.tree_map(lambda w, c: w - c, position, posterior.center))


def langevin_log_ratio(
    posterior: LocalPosterior, position, loss, proposal, proposal_loss, proposal_grad, noise, step_size
):
    r"""Log Metropolis–Hastings ratio of the Langevin proposal ``proposal`` = w − (ε/2)∇U(w) + √ε ``noise``:

    .. math:: U(w) - U(w') + \tfrac12\lVert\xi\rVert^2
        - \tfrac1{2\varepsilon}\lVert w - w' + \tfrac\varepsilon2 \nabla U(w')\rVert^2,

    with :math:`U = n\beta L + \frac\gamma2\lVert w-w^*\rVert^2` from the given losses (``loss`` at
    ``position``; ``proposal_loss`` and ``proposal_grad`` = ∇U at ``proposal``; all on the same batch), so no
    forward pass is repeated. The potential difference is formed from the loss difference, which keeps it
    accurate in float32 when nβL is large. NaN or −inf when a potential is not finite.
    """
    backward = jax.tree_util.tree_map(lambda w, p, g: w - p + 0.5 * step_size * g, position, proposal, proposal_grad)
    potential_drop = posterior.nbeta * (loss - proposal_loss) + 0.5 * posterior.localization * (
        _squared_distance(posterior, position) - _squared_distance(posterior, proposal)
    )
    return potential_drop + 0.5 * _squared_norm(noise) - _squared_norm(backward) / (2 * step_size)


def acceptance_probability(log_ratio) -> jax.Array:
    """min(1, exp(log_ratio)), and 0 where the ratio is NaN (a non-finite potential)."""
    return jnp.where(jnp.isnan(log_ratio), 0.0, jnp.exp(jnp.minimum(log_ratio, 0.0)))


def init(position) -> MALAState:
    grad = jax.tree_util.tree_map(jnp.zeros_like, position)
    return MALAState(position, jnp.zeros((), jnp.float32), grad, jnp.zeros((), bool))


def build_kernel(posterior: LocalPosterior):
    """Return ``kernel(rng_key, state, batch, step_size) -> (state, info)``."""

    def kernel(rng_key, state: MALAState, batch, step_size):
        proposal_key, accept_key = jax.random.split(rng_key)
        noise = normal_like(proposal_key, state.position)
        scale = jnp.sqrt(step_size)
        proposal = jax.tree_util.tree_map(
            lambda w, g, z: (w - 0.5 * step_size * g + scale * z).astype(w.dtype), state.position, state.grad, noise
        )
        # Until the cache is filled, the step evaluates where the chain stands instead of proposing.
        ready = state.initialized
        point = jax.tree_util.tree_map(lambda p, w: jnp.where(ready, p, w), proposal, state.position)
        loss, grad = posterior.loss_and_grad(point, batch)

        log_ratio = langevin_log_ratio(posterior, state.position, state.loss, point, loss, grad, noise, step_size)
        acceptance_rate = jnp.where(ready, acceptance_probability(log_ratio), 1.0)
        log_uniform = jnp.log(jax.random.uniform(accept_key, dtype=acceptance_rate.dtype))
        # NaN compares False: a proposal with a non-finite potential is rejected.
        accept = jnp.logical_or(jnp.logical_not(ready), log_uniform < log_ratio)

        def pick(new, old):
            return jnp.where(accept, new, old).astype(old.dtype)

        new_state = MALAState(
            position=jax.tree_util.tree_map(pick, point, state.position),
            loss=pick(loss, state.loss),
            grad=jax.tree_util.tree_map(pick, grad, state.grad),
            initialized=jnp.ones((), bool),
        )
        start_loss = jnp.where(ready, state.loss, loss)
        return new_state, MALAInfo(start_loss, acceptance_rate, accept)

    return kernel


def mala(posterior: LocalPosterior, step_size) -> SamplingAlgorithm:
    """Full-batch MALA with step size ε (proposal variance ε, drift −(ε/2)∇U, as SGLD).

    See the module docstring for the acceptance probability and the cached first step.

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> def loss(w, frozen, batch):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> algorithm = slt.samplers.mala(posterior, step_size=0.1)
        >>> def body(state, key):
        ...     return algorithm.step(key, state, None)  # this loss needs no data
        >>> keys = jax.random.split(jax.random.key(0), 4000)
        >>> state, info = jax.lax.scan(body, algorithm.init(jnp.zeros(2)), keys)
        >>> info._fields
        ('loss', 'acceptance_rate', 'is_accepted')
        >>> bool(0.5 < info.acceptance_rate.mean() < 1), bool(abs(10.0 * info.loss[1000:].mean() - 10 / 11) < 0.2)
        (True, True)
    """
    kernel = build_kernel(posterior)

    def step(rng_key, state, batch):
        return kernel(rng_key, state, batch, step_size)

    return SamplingAlgorithm(init, step)


# The Metropolis correction needs exact potentials: estimate_llc defaults batch_size to n and rejects a smaller one.
register(SamplerSpec("mala", mala, full_batch_only=True))
