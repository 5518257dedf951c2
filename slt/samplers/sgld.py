r"""Stochastic gradient Langevin dynamics (Welling & Teh, ICML 2011) on the local posterior.

.. math::

    w_{t+1} = w_t - \frac{\varepsilon}{2}\Big[n\beta\,\nabla L_{B_t}(w_t) + \gamma (w_t - w^*)\Big]
              + \mathcal N(0, \varepsilon I)

as in Lau et al. (arXiv 2308.12108, eq. (13)). blackjax writes the same update as
:math:`x + h\nabla\log p + \sqrt{2h}\,\xi`, so its ``step_size`` ``h`` is :math:`\varepsilon/2` here.

We do not call ``blackjax.sgld``: its ``grad_estimator`` interface returns the gradient only, so recording
the minibatch loss :math:`L_{B_t}(w_t)` (which the LLC needs at every draw) would cost a second forward
pass per step. Here the loss comes from the same ``value_and_grad`` evaluation.

:func:`sgld_with_acceptance` runs the same chain (the same positions, bit for bit, for the same key) and also
reports the Metropolis–Hastings acceptance probability that MALA (:mod:`slt.samplers.mala`) would give each
SGLD step, computed on the step's own minibatch,

.. math::

    a_t = \min\Big(1,\ \exp\big[U_B(w_t) - U_B(w_{t+1}) + \tfrac12\lVert\xi_t\rVert^2
        - \tfrac{1}{2\varepsilon}\lVert w_t - w_{t+1} + \tfrac\varepsilon2\nabla U_B(w_{t+1})\rVert^2\big]\Big)

(:math:`\xi_t` the step's standard normal noise). Nothing is rejected: it is a diagnostic of the step size
(Lau et al., arXiv 2308.12108, use it to flag steps too large for the local geometry; a mean far below 1
means the discretization is coarse there). It costs one more ``value_and_grad`` per step, at
:math:`w_{t+1}`, on the same minibatch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slt.posterior import LocalPosterior
from slt.samplers._registry import SamplerSpec, register
from slt.samplers.base import SamplingAlgorithm, normal_like
from slt.samplers.mala import acceptance_probability, langevin_log_ratio

__all__ = ["SGLDState", "SGLDInfo", "SGLDAcceptanceInfo", "build_kernel", "sgld", "sgld_with_acceptance"]


class SGLDState(NamedTuple):
    position: Any


class SGLDInfo(NamedTuple):
    loss: jax.Array  # L_B(w_t) at the position the step started from


class SGLDAcceptanceInfo(NamedTuple):
    loss: jax.Array  # L_B(w_t) at the position the step started from
    acceptance_rate: jax.Array  # min(1, MH ratio) of this SGLD step as a MALA proposal, on the same minibatch


def init(position) -> SGLDState:
    return SGLDState(position)


def _sgld_move(position, grad, noise, step_size):
    scale = jnp.sqrt(step_size)
    return jax.tree_util.tree_map(
        lambda w, g, z: (w - 0.5 * step_size * g + scale * z).astype(w.dtype),
        position,
        grad,
        noise,
    )


def build_kernel(posterior: LocalPosterior):
    """Return ``kernel(rng_key, state, batch, step_size) -> (state, info)``."""

    def kernel(rng_key, state: SGLDState, batch, step_size) -> tuple[SGLDState, SGLDInfo]:
        loss, grad = posterior.loss_and_grad(state.position, batch)
        noise = normal_like(rng_key, state.position)
        position = _sgld_move(state.position, grad, noise, step_size)
        return SGLDState(position), SGLDInfo(loss)

    return kernel


def build_acceptance_kernel(posterior: LocalPosterior):
    """Return ``kernel(rng_key, state, batch, step_size) -> (state, info)``: SGLD plus its MALA acceptance."""

    def kernel(rng_key, state: SGLDState, batch, step_size) -> tuple[SGLDState, SGLDAcceptanceInfo]:
        loss, grad = posterior.loss_and_grad(state.position, batch)
        noise = normal_like(rng_key, state.position)
        position = _sgld_move(state.position, grad, noise, step_size)
        new_loss, new_grad = posterior.loss_and_grad(position, batch)
        log_ratio = langevin_log_ratio(posterior, state.position, loss, position, new_loss, new_grad, noise, step_size)
        return SGLDState(position), SGLDAcceptanceInfo(loss, acceptance_probability(log_ratio))

    return kernel


def sgld(posterior: LocalPosterior, step_size) -> SamplingAlgorithm:
    """SGLD with step size ε (the variance of the injected noise per step).

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> def loss(w, frozen, batch):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> algorithm = slt.samplers.sgld(posterior, step_size=0.02)
        >>> def body(state, key):
        ...     return algorithm.step(key, state, None)  # this loss needs no data
        >>> keys = jax.random.split(jax.random.key(0), 4000)
        >>> state, info = jax.lax.scan(body, algorithm.init(jnp.zeros(2)), keys)
        >>> bool(abs(10.0 * info.loss[1000:].mean() - 10 / 11) < 0.2)  # nβ (E[L] - L(w*))
        True
    """
    kernel = build_kernel(posterior)

    def step(rng_key, state, batch):
        return kernel(rng_key, state, batch, step_size)

    return SamplingAlgorithm(init, step)


def sgld_with_acceptance(posterior: LocalPosterior, step_size) -> SamplingAlgorithm:
    """:func:`sgld` (identical positions for the same key) whose info also has ``acceptance_rate``: the MALA
    acceptance probability of each SGLD step on its own minibatch (a step-size diagnostic; nothing is
    rejected). One extra ``value_and_grad`` per step.

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> def loss(w, frozen, batch):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> algorithm = slt.samplers.sgld_with_acceptance(posterior, step_size=0.02)
        >>> plain = slt.samplers.sgld(posterior, step_size=0.02)
        >>> keys = jax.random.split(jax.random.key(0), 1000)
        >>> state, info = jax.lax.scan(lambda s, k: algorithm.step(k, s, None), algorithm.init(jnp.zeros(2)), keys)
        >>> same, _ = jax.lax.scan(lambda s, k: plain.step(k, s, None), plain.init(jnp.zeros(2)), keys)
        >>> bool(jnp.array_equal(state.position, same.position)), bool(0.9 < info.acceptance_rate.mean() <= 1)
        (True, True)
    """
    kernel = build_acceptance_kernel(posterior)

    def step(rng_key, state, batch):
        return kernel(rng_key, state, batch, step_size)

    return SamplingAlgorithm(init, step)


# calibration (slt.calibrate) runs the variant to record the acceptance of each step
register(SamplerSpec("sgld", sgld, with_acceptance=sgld_with_acceptance, langevin_bias=True))
