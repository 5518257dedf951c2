"""The validated settings of a sampling run at one point w*, shared by the estimators (LLC, calibration, free
energy, trajectories): chains, draws, burn-in, minibatch size m, nβ (default n/log n, Lau et al. arXiv
2308.12108), γ, the sampler and its hyperparameters."""

from __future__ import annotations

import dataclasses
from typing import Any

from slt._src import validate
from slt.posterior import resolve_nbeta
from slt.samplers import sampler_spec

__all__ = ["SamplingSettings"]


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """Validated settings of one LLC estimate (what :func:`slt.estimate_llc` and the trajectory tools share)."""

    num_data: int
    step_size: float
    num_chains: int
    num_draws: int
    num_burnin: int
    batch_size: int
    nbeta: float
    localization: float
    sampler: Any
    estimator: str
    chunk_size: int
    sampler_params: tuple = ()  # extra hyperparameters of the sampler, as sorted (name, value) pairs
    num_params: int | None = None  # d, the number of moving parameters (for the λ̂ <= d/2 check)

    @property
    def all_sampler_params(self) -> dict:
        """What the sampler factory receives: ``step_size`` and the extra hyperparameters."""
        return {"step_size": self.step_size, **dict(self.sampler_params)}

    @classmethod
    def validated(
        cls,
        *,
        num_data: int,
        step_size,
        num_chains=4,
        num_draws=2000,
        num_burnin=1000,
        batch_size=None,
        nbeta=None,
        localization=1.0,
        sampler="sgld",
        sampler_params=None,
        estimator="paired",
        chunk_size=1024,
        num_params=None,
    ) -> SamplingSettings:
        """Check every setting against ``num_data``; raise ValueError naming the argument."""
        step_size = validate.positive_float(step_size, "step_size")
        num_chains = validate.positive_int(num_chains, "num_chains")
        num_draws = validate.positive_int(num_draws, "num_draws")
        num_burnin = validate.non_negative_int(num_burnin, "num_burnin")
        if estimator not in ("paired", "plain"):
            raise ValueError(f"`estimator` must be 'paired' or 'plain'; got {estimator!r}.")
        localization = validate.localization(localization)
        chunk_size = validate.positive_int(chunk_size, "chunk_size")
        spec = sampler_spec(sampler)  # validates the name early
        full_batch_only = spec.full_batch_only
        warmup = int(getattr(spec.factory, "num_warmup", 0)) if spec.adaptive_warmup else 0
        if num_burnin < warmup:
            raise ValueError(
                f"sampler {spec.name!r} adapts its step size during its first {warmup} steps: `num_burnin` must be "
                f"at least {warmup} so that no adapting step is kept; got {num_burnin}."
            )
        if batch_size is None:
            batch_size = num_data if full_batch_only else min(num_data, 256)
        batch_size = validate.positive_int(batch_size, "batch_size")
        if batch_size > num_data:
            raise ValueError(f"`batch_size` ({batch_size}) must not exceed the number of data points n = {num_data}.")
        if full_batch_only and batch_size != num_data:
            raise ValueError(
                f"sampler {spec.name!r} is declared full-batch only (e.g. a Metropolis correction "
                "needs exact potentials): "
                f"`batch_size` must be n = {num_data} or None; got {batch_size}."
            )
        sampler_params = validate.sampler_params(sampler_params)
        return cls(
            num_data=num_data,
            step_size=step_size,
            num_chains=num_chains,
            num_draws=num_draws,
            num_burnin=num_burnin,
            batch_size=batch_size,
            nbeta=resolve_nbeta(nbeta, num_data),
            localization=localization,
            sampler=sampler,
            estimator=estimator,
            chunk_size=chunk_size,
            sampler_params=sampler_params,
            num_params=num_params,
        )

    @property
    def sampler_name(self) -> str:
        s = self.sampler
        return s if isinstance(s, str) else getattr(s, "__name__", repr(s))

    def describe(self) -> dict:
        """The settings as plain values (for stores and saved results)."""
        return {
            "nbeta": self.nbeta,
            "localization": self.localization,
            "step_size": self.step_size,
            "batch_size": self.batch_size,
            "num_data": self.num_data,
            "num_chains": self.num_chains,
            "num_draws": self.num_draws,
            "num_burnin": self.num_burnin,
            "sampler": self.sampler_name,
            "sampler_params": dict(self.sampler_params),
            "estimator": self.estimator,
        }
