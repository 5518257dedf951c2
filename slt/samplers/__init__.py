"""Sampler kernels for the local posterior, one module per family, all ``SamplingAlgorithm(init, step)``.

Every kernel uses the SGLD step-size convention ε of :mod:`slt.samplers.sgld` (the noise variance of an
SGLD step), so one ε means the same per-step gradient displacement for all of them:

* ``"sgld"``: :func:`sgld` (and :func:`sgld_with_acceptance`, the same chain plus a MALA acceptance diagnostic);
* ``"rmsprop_sgld"``: :func:`rmsprop_sgld`, diagonal RMSprop preconditioning (``alpha``, ``eps``);
* ``"sghmc"``: :func:`sghmc`, momentum with per-step ``friction``;
* ``"sgnht"``: :func:`sgnht`, momentum with a Nosé–Hoover thermostat (``diffusion``);
* ``"mala"``: :func:`mala`, full-batch Metropolis-adjusted Langevin (exact for every ε);
* ``"nuts"``: :data:`nuts`, full-batch No-U-Turn sampler whose warmup adapts its step size and mass matrix
  inside the chain (:class:`NUTS` for other static settings). The exception to the ε convention: its
  ``step_size`` is the initial *leapfrog* step h (one leapfrog step from a fresh momentum is an SGLD step
  with ε = h²), which the warmup then adapts.

Each module registers its sampler at import, with its capabilities (:class:`SamplerSpec`: full batch only, an
acceptance-recording variant, a step gain, a calibration check); :func:`register` adds a user's own
(:mod:`slt.samplers._registry`).

SGLD, RMSprop-SGLD and SGHMC are also optax ``GradientTransformation`` objects (:func:`sgld_transform`,
:func:`rmsprop_sgld_transform`, :func:`sghmc_transform`, with :func:`minibatch_indices`) that reproduce the
driver's chains inside a user's own optax loop (:mod:`slt.samplers._optax`).
"""

from __future__ import annotations

from slt.samplers._optax import (
    RMSpropSGLDTransformState,
    SGHMCTransformState,
    SGLDTransformState,
    minibatch_indices,
    rmsprop_sgld_transform,
    sghmc_transform,
    sgld_transform,
)
from slt.samplers._registry import (
    SamplerSpec,
    get_sampler,
    register,
    registered_samplers,
    sampler_spec,
    unregister,
)
from slt.samplers.base import SamplerFactory, SamplingAlgorithm, normal_like
from slt.samplers.mala import mala
from slt.samplers.nuts import NUTS, nuts
from slt.samplers.rmsprop_sgld import rmsprop_sgld
from slt.samplers.sghmc import sghmc
from slt.samplers.sgld import sgld, sgld_with_acceptance
from slt.samplers.sgnht import sgnht

__all__ = [
    "SamplerFactory",
    "SamplingAlgorithm",
    "normal_like",
    "sgld",
    "sgld_with_acceptance",
    "rmsprop_sgld",
    "sghmc",
    "sgnht",
    "mala",
    "NUTS",
    "nuts",
    "SamplerSpec",
    "register",
    "unregister",
    "registered_samplers",
    "sampler_spec",
    "get_sampler",
    "sgld_transform",
    "rmsprop_sgld_transform",
    "sghmc_transform",
    "minibatch_indices",
    "SGLDTransformState",
    "RMSpropSGLDTransformState",
    "SGHMCTransformState",
]
