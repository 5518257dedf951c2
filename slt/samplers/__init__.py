"""Sampler kernels for the local posterior, one module per family, all ``SamplingAlgorithm(init, step)``.

Every kernel uses the SGLD step-size convention ε of :mod:`slt.samplers.sgld` (the noise variance of an
SGLD step), so one ε means the same per-step gradient displacement for all of them:

* ``"sgld"``: :func:`sgld` (and :func:`sgld_with_acceptance`, the same chain plus a MALA acceptance diagnostic);
* ``"rmsprop_sgld"``: :func:`rmsprop_sgld`, diagonal RMSprop preconditioning (``alpha``, ``eps``);
* ``"sghmc"``: :func:`sghmc`, momentum with per-step ``friction``;
* ``"sgnht"``: :func:`sgnht`, momentum with a Nosé–Hoover thermostat (``diffusion``);
* ``"mala"``: :func:`mala`, full-batch Metropolis-adjusted Langevin (exact for every ε).
"""

from __future__ import annotations

from slt.samplers.base import SamplerFactory, SamplingAlgorithm, normal_like
from slt.samplers.mala import mala
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
    "get_sampler",
    "SAMPLERS",
    "FULL_BATCH_SAMPLERS",
]

SAMPLERS = {"sgld": sgld, "rmsprop_sgld": rmsprop_sgld, "sghmc": sghmc, "sgnht": sgnht, "mala": mala}

# Samplers whose correctness needs the exact full-data potential (a Metropolis-Hastings correction):
# ``estimate_llc`` defaults their ``batch_size`` to n and rejects a smaller one.
FULL_BATCH_SAMPLERS = frozenset({"mala"})


def get_sampler(sampler) -> SamplerFactory:
    """Resolve a sampler name or a user factory ``factory(posterior, step_size=...) -> SamplingAlgorithm``."""
    if isinstance(sampler, str):
        try:
            return SAMPLERS[sampler]
        except KeyError:
            raise ValueError(
                f"`sampler` must be one of {sorted(SAMPLERS)} or a factory "
                f"`factory(posterior, step_size=...) -> SamplingAlgorithm`; got {sampler!r}."
            ) from None
    if callable(sampler):
        return sampler
    raise ValueError(f"`sampler` must be a name or a callable factory; got {type(sampler).__name__}.")
