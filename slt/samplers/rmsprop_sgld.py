r"""RMSprop-preconditioned SGLD (Li, Chen, Carlson & Carin, AAAI 2016) in the form used for LLC estimation by
Hitchcock & Hoogland, "From Global to Local: A Scalable Benchmark for Local Posterior Sampling"
(arXiv 2507.21449), i.e. devinterp's ``SGMCMC.rmsprop_sgld``.

.. math::

    V_t &= \alpha V_{t-1} + (1-\alpha)\, \big(\nabla L_{B_t}(w_t)\big)^{\odot 2}, \qquad V_0 = 0, \\
    G_t &= 1 \,/\, \big(\sqrt{V_t} + \delta\big), \\
    w_{t+1} &= w_t - \frac{\varepsilon}{2}\, G_t \odot \Big[n\beta\,\nabla L_{B_t}(w_t) + \gamma (w_t - w^*)\Big]
              + \sqrt{\varepsilon\, G_t} \odot \mathcal N(0, I),

all elementwise (a diagonal preconditioner). The running mean square :math:`V` is built from the gradient of the
minibatch *loss* :math:`L_B` alone: not multiplied by nβ and without the localization term, so δ is in units
of a per-sample loss gradient. :math:`V` is updated with the current gradient *before* it is used, and there
is no bias correction of the zero start (as in devinterp). Both the drift (likelihood and localization) and
the injected noise are preconditioned, the noise by :math:`\sqrt{G}` so that for a *fixed* :math:`G` the chain
targets :math:`\exp(-U)` to first order in ε.

Step size: with :math:`G \equiv 1` this is :func:`slt.samplers.sgld` with the same ε. The effective step of
coordinate i is :math:`\varepsilon G_{t,i} \in (0, \varepsilon/\delta]`, up to 10 ε at the default δ where
gradients are small (near w* with large batches), so an ε calibrated for SGLD is too large here by up to
1/δ: start from about δ times the SGLD step size, or from :math:`\varepsilon_\text{SGLD}(\sqrt{V}+\delta)`.

Defaults: ``alpha`` (α) = 0.99 and ``eps`` (δ) = 0.1 are devinterp's defaults for RMSprop-SGLD, the settings
of the Hitchcock & Hoogland benchmark. The names follow devinterp and ``torch.optim.RMSprop`` so that configs
carry over; note that ``eps`` is RMSprop's stabilizer δ, not the step size ε.

What it samples. The preconditioner moves with the chain and there is no correction term
:math:`\nabla\!\cdot G` (Li et al. drop it), so RMSprop-SGLD is not exact even with full batches and
ε → 0 (Rensmeyer & Niggemann, arXiv 2403.08609, show such adaptive samplers stay biased in that limit).
Two limits are exact and tested (tests/samplers):

* ``alpha = 1``: :math:`V` stays 0, :math:`G = 1/\delta` is fixed, and the chain is SGLD with step ε/δ; its
  stationary law for a quadratic loss solves a discrete Lyapunov equation.
* ``alpha = 0``: :math:`G(w) = 1/(|\nabla L(w)| + \delta)` depends on the position only. In one dimension the
  ε → 0 limit :math:`dw = -\frac12 G U' dt + \sqrt{G}\, dW` has zero-flux stationary density
  :math:`p \propto e^{-U}/G = e^{-U} (|L'(w)| + \delta)`, not :math:`e^{-U}`.

When the averaging window of :math:`1/(1-\alpha)` steps is short against the chain's relaxation time
(:math:`\varepsilon G c \ll 1-\alpha` for curvature c), :math:`V_t \approx (\nabla L(w_t))^2` and the
default behaves like the ``alpha = 0`` case in full batch; with minibatches whose gradient noise dominates
:math:`\nabla L`, :math:`V` is close to the per-coordinate second moment of the minibatch gradient and
:math:`G` is close to fixed. Relative comparisons (the use in arXiv 2507.21449) are more robust
than absolute λ̂ values.

We do not use blackjax for this kernel: blackjax has no RMSprop-preconditioned SGLD, and its sgmcmc kernels
take a gradient estimator that returns the gradient only (recording :math:`L_B` would cost a second forward
pass), with a ``temperature`` that would also temper the localizing prior.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slt.posterior import LocalPosterior
from slt.samplers._registry import SamplerSpec, register
from slt.samplers.base import SamplingAlgorithm, normal_like

__all__ = ["RMSpropSGLDState", "RMSpropSGLDInfo", "build_kernel", "rmsprop_sgld"]


class RMSpropSGLDState(NamedTuple):
    position: Any
    square_avg: Any  # V: running mean of the squared loss gradient, same structure as the position


class RMSpropSGLDInfo(NamedTuple):
    loss: jax.Array  # L_B(w_t) at the position the step started from


def _accumulator_dtype(dtype):
    """V is kept in at least float32: squared gradients of low-precision leaves underflow."""
    return jnp.promote_types(dtype, jnp.float32)


def init(position) -> RMSpropSGLDState:
    square_avg = jax.tree_util.tree_map(lambda w: jnp.zeros(w.shape, _accumulator_dtype(w.dtype)), position)
    return RMSpropSGLDState(position, square_avg)


def build_kernel(posterior: LocalPosterior):
    """Return ``kernel(rng_key, state, batch, step_size, alpha, eps) -> (state, info)``."""

    def kernel(rng_key, state: RMSpropSGLDState, batch, step_size, alpha, eps):
        # The loss gradient alone feeds V, so take it before nβ and the localization are added.
        loss, loss_grad = jax.value_and_grad(posterior.loss)(state.position, posterior.frozen, batch)
        noise = normal_like(rng_key, state.position)

        square_avg = jax.tree_util.tree_map(
            lambda v, g: alpha * v + (1 - alpha) * jnp.square(g.astype(v.dtype)), state.square_avg, loss_grad
        )

        def move(w, g, c, v, z):
            precond = 1 / (jnp.sqrt(v) + eps)
            grad_potential = posterior.nbeta * g + posterior.localization * (w - c)
            return (w - 0.5 * step_size * precond * grad_potential + jnp.sqrt(step_size * precond) * z).astype(w.dtype)

        position = jax.tree_util.tree_map(move, state.position, loss_grad, posterior.center, square_avg, noise)
        return RMSpropSGLDState(position, square_avg), RMSpropSGLDInfo(loss)

    return kernel


def rmsprop_sgld(posterior: LocalPosterior, step_size, alpha=0.99, eps=0.1) -> SamplingAlgorithm:
    """RMSprop-preconditioned SGLD with step size ε, squared-gradient decay ``alpha`` and stabilizer ``eps`` (δ).

    See the module docstring for the update, the step-size convention and what it samples.

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> def loss(w, frozen, batch):  # L = |w|^2 / 2; nβ = 10, γ = 1: nβ E[L] = (d/2) 10/11 = 0.91
        ...     return 0.5 * jnp.sum(w**2)
        >>> posterior = slt.LocalPosterior(loss, jnp.zeros(2), None, nbeta=10.0, localization=1.0)
        >>> algorithm = slt.samplers.rmsprop_sgld(posterior, step_size=0.02, alpha=0.99, eps=0.1)
        >>> def body(state, key):
        ...     return algorithm.step(key, state, None)  # this loss needs no data
        >>> keys = jax.random.split(jax.random.key(0), 4000)
        >>> state, info = jax.lax.scan(body, algorithm.init(jnp.zeros(2)), keys)
        >>> state._fields, bool(jnp.all(state.square_avg > 0))  # V tracks the squared loss gradient
        (('position', 'square_avg'), True)
        >>> bool(jnp.all(jnp.isfinite(info.loss)))
        True
    """
    kernel = build_kernel(posterior)

    def step(rng_key, state, batch):
        return kernel(rng_key, state, batch, step_size, alpha, eps)

    return SamplingAlgorithm(init, step)


def _step_gain(params: dict) -> float:
    """Largest effective step per unit ε: G = 1/(sqrt(V) + δ) <= 1/δ (used to cap calibration grids)."""
    return 1.0 / float(params.get("eps", 0.1))


# alpha = 1 keeps V = 0, a constant preconditioner G = 1/δ: the ε → 0 law is then the posterior (with alpha < 1 the
# preconditioner follows w and the law is tilted, see the module docstring); δ = 0.5 tells G from √G.
register(
    SamplerSpec(
        "rmsprop_sgld",
        rmsprop_sgld,
        step_gain=_step_gain,
        stationary_test={"alpha": 1.0, "eps": 0.5},
        langevin_bias=True,
    )
)
