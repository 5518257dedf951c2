r"""Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, ICML 2014) on the local posterior.

In the "SGD with momentum" form of Chen et al. (Sec. 3.3, eq. (15), with :math:`\hat\beta = 0`), with
learning rate :math:`\eta = \varepsilon/2` and per-step friction :math:`\alpha` (``friction``):

.. math::

    v_{t+1} &= (1-\alpha)\, v_t - \frac{\varepsilon}{2}\Big[n\beta\,\nabla L_{B_t}(w_t) + \gamma (w_t - w^*)\Big]
               + \mathcal N(0, \alpha\varepsilon I), \\
    w_{t+1} &= w_t + v_{t+1}.

This is a symplectic-Euler discretization of :math:`dw = p\,dt`,
:math:`dp = -\nabla U\,dt - C p\,dt + \sqrt{2C}\,dW` with time step :math:`h = \sqrt{\varepsilon/2}`,
:math:`v = h p` and :math:`C = \alpha/h`; it targets :math:`\exp(-U)` with
:math:`U = n\beta L_n + \frac\gamma2\lVert w-w^*\rVert^2` (noise variance :math:`2\alpha\eta = \alpha\varepsilon`, so
temperature 1 in the same units as SGLD). The gradient is taken at the position the step starts from, from
the same evaluation as the recorded loss :math:`L_{B_t}(w_t)`.

Step-size convention: the same ε as :func:`slt.samplers.sgld`. With ``friction = 1`` the momentum is
forgotten every step and the update *is* SGLD with step ε. With ``friction < 1`` a step moves the chain
further: in a direction of curvature c the chain is ballistic for about 1/α steps, and an overdamped
direction relaxes in :math:`\approx 2\alpha/(\varepsilon c)` steps instead of SGLD's :math:`2/(\varepsilon c)`.
For a quadratic direction of curvature c the recursion is stable for :math:`\varepsilon c < 4(2-\alpha)`
(SGLD: :math:`\varepsilon c < 4`). For a quadratic loss with full batches the chain is a linear Gaussian
AR(1) process in :math:`(w, v)`; its exact stationary covariance (a discrete Lyapunov equation) differs
from :math:`(n\beta H + \gamma)^{-1}` by O(ε) and is what the tests check.

Default ``friction = 0.1``: momentum is kept for about 10 steps, which speeds up flat (overdamped)
directions about tenfold over SGLD at the same ε while keeping the extra heat from minibatch gradient noise
small. Minibatch noise is not corrected (:math:`\hat\beta = 0`): it adds :math:`(\varepsilon/2)^2
\operatorname{Var}[n\beta\nabla L_B]` to the momentum variance per step, raising the temperature by a factor
of about :math:`1 + \varepsilon\operatorname{Var}[n\beta \nabla L_B]/(4\alpha)`, which grows as α shrinks
(see :func:`slt.samplers.sgnht`, whose thermostat removes the isotropic part of this heat). The momentum
starts at zero (``init`` takes no key) and reaches its stationary scale :math:`\mathcal N(0, \varepsilon/2)`
within about 1/α steps of burn-in.

We do not use ``blackjax.sghmc``: its step resamples the momentum and runs ``num_integration_steps``
gradient evaluations per call (with no per-evaluation loss), its diffusion updates the position with the old
momentum before the momentum sees the gradient (explicit Euler, stable only for much smaller steps than the
symplectic form above), and its gradient estimator returns the gradient only, so recording :math:`L_B` would
cost a second forward pass. Its ``temperature`` would also temper the localizing prior.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slt.posterior import LocalPosterior
from slt.samplers._registry import SamplerSpec, register
from slt.samplers.base import SamplingAlgorithm, normal_like

__all__ = ["SGHMCState", "SGHMCInfo", "build_kernel", "sghmc"]


class SGHMCState(NamedTuple):
    position: Any
    momentum: Any  # v = w_{t} - w_{t-1}: the last displacement, same structure as the position


class SGHMCInfo(NamedTuple):
    loss: jax.Array  # L_B(w_t) at the position the step started from


def init(position) -> SGHMCState:
    return SGHMCState(position, jax.tree_util.tree_map(jnp.zeros_like, position))


def build_kernel(posterior: LocalPosterior):
    """Return ``kernel(rng_key, state, batch, step_size, friction) -> (state, info)``."""

    def kernel(rng_key, state: SGHMCState, batch, step_size, friction):
        loss, grad = posterior.loss_and_grad(state.position, batch)
        noise = normal_like(rng_key, state.position)
        scale = jnp.sqrt(friction * step_size)
        momentum = jax.tree_util.tree_map(
            lambda v, g, z: ((1 - friction) * v - 0.5 * step_size * g + scale * z).astype(v.dtype),
            state.momentum,
            grad,
            noise,
        )
        position = jax.tree_util.tree_map(lambda w, v: w + v, state.position, momentum)
        return SGHMCState(position, momentum), SGHMCInfo(loss)

    return kernel


def sghmc(posterior: LocalPosterior, step_size, friction=0.1) -> SamplingAlgorithm:
    """SGHMC with step size ε (learning rate ε/2, as SGLD) and per-step friction α (``friction``, in (0, 1]).

    See the module docstring for the update, conventions and the choice of default.

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> def loss(w, frozen, batch):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> algorithm = slt.samplers.sghmc(posterior, step_size=0.02, friction=0.1)
        >>> def body(state, key):
        ...     return algorithm.step(key, state, None)  # this loss needs no data
        >>> keys = jax.random.split(jax.random.key(0), 4000)
        >>> state, info = jax.lax.scan(body, algorithm.init(jnp.zeros(2)), keys)
        >>> state._fields
        ('position', 'momentum')
        >>> bool(abs(10.0 * info.loss[1000:].mean() - 10 / 11) < 0.2)  # nβ (E[L] - L(w*))
        True
    """
    kernel = build_kernel(posterior)

    def step(rng_key, state, batch):
        return kernel(rng_key, state, batch, step_size, friction)

    return SamplingAlgorithm(init, step)


register(SamplerSpec("sghmc", sghmc))
