"""Sampler kernels for the local posterior, one module per family, all ``SamplingAlgorithm(init, step)``."""

from __future__ import annotations

from slt.samplers.base import SamplerFactory, SamplingAlgorithm, normal_like
from slt.samplers.sgld import sgld

__all__ = [
    "SamplerFactory",
    "SamplingAlgorithm",
    "normal_like",
    "sgld",
    "get_sampler",
    "SAMPLERS",
    "FULL_BATCH_SAMPLERS",
]

SAMPLERS = {"sgld": sgld}

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
