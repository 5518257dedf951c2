r"""Curvature of the loss: the spectral radius of its Hessian, by power iteration on Hessian-vector products.

It caps stable step sizes. An SGLD step :math:`w \leftarrow w - \frac\varepsilon2 c\,w + \mathcal N(0, \varepsilon)`
on a quadratic potential of curvature c, minimum at 0, multiplies w by :math:`1 - \varepsilon c/2`: stable only for
:math:`\varepsilon c < 4`, with :math:`c = n\beta h + \gamma` for a Hessian eigenvalue h of :math:`L_n`. Used by
:mod:`slt.calibration` (the grid's cap) and by the free energy's step schedule (:mod:`slt.free_energy`).
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp

from slt.targets import Target

__all__ = ["hessian_radius", "top_hessian_eigenvalue"]


def hessian_radius(fun, flat: jax.Array, v0: jax.Array, num_iterations: int) -> jax.Array:
    r"""Spectral radius of the Hessian of a scalar ``fun`` at ``flat`` by power iteration on Hessian-vector
    products (pure and traceable: usable under ``jit``, ``vmap`` and ``lax.map``).

    The radius, not the top eigenvalue, is what limits a gradient step's stability. At a singular point
    (e.g. w* = 0 of a product model) the Hessian can be indefinite with eigenvalues ±σ, where the Rayleigh
    quotient of a power iterate is meaningless; the norm :math:`\lVert Hv\rVert` of the normalized iterate
    converges to the radius either way. Each iteration costs one forward-over-reverse pass.
    """
    grad = jax.grad(fun)

    def body(_, carry):
        v, _ = carry
        hv = jax.jvp(grad, (flat,), (v,))[1]
        norm = jnp.linalg.norm(hv)
        return hv / jnp.where(norm > 0, norm, 1.0), norm

    v0 = v0 / jnp.linalg.norm(v0)
    return jax.lax.fori_loop(0, num_iterations, body, (v0, jnp.zeros((), flat.dtype)))[1]


def top_hessian_eigenvalue(
    target: Target, *, key: jax.Array, num_examples: int = 2048, num_iterations: int = 100
) -> float:
    r"""Spectral radius of the Hessian of :math:`L_n` at w* (:func:`hessian_radius`), on the first
    ``num_examples`` examples (:math:`L_n` is a mean, so its Hessian is estimated well by a subset)."""
    flat, unravel = jax.flatten_util.ravel_pytree(target.position)
    m = min(num_examples, target.num_data)
    data = jax.tree_util.tree_map(lambda x: x[:m], target.data)

    @jax.jit
    def radius(flat, v0):
        return hessian_radius(lambda v: target.loss(unravel(v), target.frozen, data), flat, v0, num_iterations)

    return float(radius(flat, jax.random.normal(key, flat.shape, flat.dtype)))
