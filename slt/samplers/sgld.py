r"""Stochastic gradient Langevin dynamics (Welling & Teh, ICML 2011) on the local posterior.

.. math::

    w_{t+1} = w_t - \frac{\varepsilon}{2}\Big[n\beta\,\nabla L_{B_t}(w_t) + \gamma (w_t - w^*)\Big]
              + \mathcal N(0, \varepsilon I)

as in Lau et al. (arXiv 2308.12108, eq. (13)). blackjax writes the same update as
:math:`x + h\nabla\log p + \sqrt{2h}\,\xi`, so its ``step_size`` ``h`` is :math:`\varepsilon/2` here.

We do not call ``blackjax.sgld``: its ``grad_estimator`` interface returns the gradient only, so recording
the minibatch loss :math:`L_{B_t}(w_t)` (which the LLC needs at every draw) would cost a second forward
pass per step. Here the loss comes from the same ``value_and_grad`` evaluation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slt.posterior import LocalPosterior
from slt.samplers.base import SamplingAlgorithm, normal_like

__all__ = ["SGLDState", "SGLDInfo", "build_kernel", "sgld"]


class SGLDState(NamedTuple):
    position: Any


class SGLDInfo(NamedTuple):
    loss: jax.Array  # L_B(w_t) at the position the step started from


def init(position) -> SGLDState:
    return SGLDState(position)


def build_kernel(posterior: LocalPosterior):
    """Return ``kernel(rng_key, state, batch, step_size) -> (state, info)``."""

    def kernel(rng_key, state: SGLDState, batch, step_size) -> tuple[SGLDState, SGLDInfo]:
        loss, grad = posterior.loss_and_grad(state.position, batch)
        noise = normal_like(rng_key, state.position)
        scale = jnp.sqrt(step_size)
        position = jax.tree_util.tree_map(
            lambda w, g, z: (w - 0.5 * step_size * g + scale * z).astype(w.dtype),
            state.position,
            grad,
            noise,
        )
        return SGLDState(position), SGLDInfo(loss)

    return kernel


def sgld(posterior: LocalPosterior, step_size) -> SamplingAlgorithm:
    """SGLD with step size ε (the variance of the injected noise per step)."""
    kernel = build_kernel(posterior)

    def step(rng_key, state, batch):
        return kernel(rng_key, state, batch, step_size)

    return SamplingAlgorithm(init, step)
