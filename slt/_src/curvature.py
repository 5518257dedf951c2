r"""Curvature of the loss: the spectral radius of its Hessian, by power iteration on Hessian-vector products.

It caps stable step sizes. An SGLD step :math:`w \leftarrow w - \frac\varepsilon2 c\,w + \mathcal N(0, \varepsilon)`
on a quadratic potential of curvature c, minimum at 0, multiplies w by :math:`1 - \varepsilon c/2`: stable only for
:math:`\varepsilon c < 4`, with :math:`c = n\beta h + \gamma` for a Hessian eigenvalue h of :math:`L_n`. Used by
:mod:`slt.calibration` (the grid's cap) and by the free energy's step schedule (:mod:`slt.free_energy`).
"""

from __future__ import annotations

import functools
import math

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
    ``num_examples`` examples (:math:`L_n` is a mean, so its Hessian is estimated well by a subset).

    Where the radius at w* is not finite (a loss written with ``w ** p`` and float p at w = 0: JAX's second
    derivative of ``x ** 1.0`` at 0 is ``0 * inf``), the curvature is probed at nearby points
    :math:`w^* + r z`, :math:`z \sim \mathcal N(0, I)`, for :math:`r \in` :data:`PROBE_RADII` (scaled by
    :math:`1 + \lVert w^*\rVert_{\rm rms}`), and the largest finite radius is returned: a conservative cap,
    since the chains leave w* at the first step. Where no probe is finite either, the error names the
    parameter leaves whose gradient or Hessian-vector product is non-finite at w*; so does a gradient that is not
    finite at w* (every chain started there would diverge at its first step).
    """
    flat, unravel = jax.flatten_util.ravel_pytree(target.position)
    m = min(num_examples, target.num_data)

    def loss(v):
        return target.loss(unravel(v), target.frozen, jax.tree_util.tree_map(lambda x: x[:m], target.data))

    def radius(probe: int, probe_radius: float):  # one compiled program (module-level jit) for w* and the probes
        return _radius(
            target.loss, target.position, target.frozen, target.data, key, probe, probe_radius, m, num_iterations
        )

    value, gradient_finite = radius(0, 0.0)
    if not bool(gradient_finite):  # every chain's first step would be NaN: say where, now
        raise ValueError(
            f"the gradient of the loss is not finite at w*: {_non_finite_leaves(loss, flat, unravel, key)} A chain "
            "started there diverges at its first step. Check the loss for operations whose derivative is undefined "
            "at these parameters (e.g. sqrt(0), |w| ** p with p < 1, log(0))."
        )
    value = float(value)
    if math.isfinite(value):
        return value
    scale = 1.0 + float(jnp.sqrt(jnp.mean(flat**2))) if flat.size else 1.0
    probes = [float(radius(i + 1, r * scale)[0]) for i, r in enumerate(PROBE_RADII)]
    finite = [p for p in probes if math.isfinite(p)]
    if finite:
        return max(finite)
    raise ValueError(
        "the curvature of the loss is not finite at w* nor at nearby points (radii "
        f"{', '.join(f'{r:g}' for r in PROBE_RADII)}): {_non_finite_leaves(loss, flat, unravel, key)} Check the "
        "loss for operations undefined at these parameters (e.g. log(0), x ** p with x < 0, 0 * inf), or pass "
        "`step_size` as a number."
    )


@functools.partial(jax.jit, static_argnames=("loss", "num_examples", "num_iterations"))
def _radius(loss, position, frozen, data, key, probe, probe_radius, num_examples, num_iterations):
    """(Hessian radius, whether the gradient is finite) on the first ``num_examples`` examples at
    :math:`w^* + r z` (``r = probe_radius``; z and the power iteration's start drawn from ``fold_in(key, probe)``):
    one compiled program for w* (r = 0) and the probes."""
    flat, unravel = jax.flatten_util.ravel_pytree(position)
    data = jax.tree_util.tree_map(lambda x: x[:num_examples], data)
    z_key, v_key = jax.random.split(jax.random.fold_in(key, probe))
    point = flat + probe_radius * jax.random.normal(z_key, flat.shape, flat.dtype)

    def fun(v):
        return loss(unravel(v), frozen, data)

    v0 = jax.random.normal(v_key, flat.shape, flat.dtype)
    return hessian_radius(fun, point, v0, num_iterations), jnp.isfinite(jax.grad(fun)(point)).all()


# Radii (times 1 + rms(w*)) of the points probed when the curvature at w* is not finite.
PROBE_RADII = (1e-3, 1e-2, 1e-1)


def _non_finite_leaves(loss, flat, unravel, key) -> str:
    """Which parameter leaves have a non-finite gradient or Hessian-vector product at ``flat``, in words."""
    grad = jax.grad(loss)
    g = grad(flat)
    hv = jax.jvp(grad, (flat,), (jax.random.normal(key, flat.shape, flat.dtype),))[1]
    named = []
    for what, vec in (("gradient", g), ("Hessian-vector product", hv)):
        leaves = jax.tree_util.tree_flatten_with_path(unravel(vec))[0]
        bad = [jax.tree_util.keystr(path) or "(root)" for path, x in leaves if not bool(jnp.isfinite(x).all())]
        if bad:
            named.append(f"the {what} is non-finite in leaf {', '.join(bad)}")
    if not named:
        return "the loss's gradient and Hessian-vector products are finite at w*, but power iteration was not."
    return "at w*, " + "; ".join(named) + "."


def predicted_step_bias(step_size, *, nbeta, localization, hessian_top, batch_size, num_data, gain=1.0) -> float:
    r"""First-order relative bias of λ̂ from an SGLD-type step in the stiffest direction at w*,

    .. math:: b = \frac{g\varepsilon\,(n\beta h_{\max} + \gamma)}{4}\Big(1 + \frac{n\beta}{m}\Big)

    (:mod:`slt.calibration`: the deterministic bias :math:`\varepsilon c/4` of a direction of curvature c, times the
    minibatch factor near a well-specified minimum; no factor for full batches, m = n). Each direction's bias is at
    most this, so λ̂'s is too, to first order.

    Example:
        >>> from slt._src.curvature import predicted_step_bias
        >>> round(predicted_step_bias(1e-3, nbeta=100.0, localization=0.0, hessian_top=2.0, batch_size=100,
        ...                           num_data=100), 3)  # full batch: ε c / 4
        0.05
    """
    noise = 1.0 + nbeta / batch_size if batch_size < num_data else 1.0
    return float(gain * step_size * (nbeta * hessian_top + localization) / 4.0 * noise)
