r"""The sampler registry: each sampler registers once, under a name, with the capabilities it declares.

A sampler is a factory ``factory(posterior, step_size, **hyperparameters) -> SamplingAlgorithm``
(:class:`slt.samplers.SamplerFactory`). Its :class:`SamplerSpec` names it and declares its *capabilities*:
what the rest of the toolkit may rely on beyond that protocol. Every capability is optional, and one left
out means the default behaviour, never an error:

* ``full_batch_only``: the kernel is correct only on the exact full-data potential (a Metropolis
  correction, as MALA's). :func:`slt.estimate_llc` then defaults ``batch_size`` to n and rejects a smaller one.
* ``with_acceptance``: a factory for the *same* chains (the same positions for the same key) whose info also
  has ``acceptance_rate``. :func:`slt.calibrate` runs it, to flag steps too large for the local geometry.
* ``step_gain(params) -> float``: the largest effective step per unit ε, given the other hyperparameters
  (1 unless preconditioned; RMSprop-SGLD: 1/δ). :func:`slt.calibrate` divides its curvature cap by it.
* ``calibration_check(means, params) -> bool array``: given the per-cell means of the kernel's info
  statistics (each shape (G,)) and the hyperparameters, which calibration cells are in the regime where the
  sampler is valid; :func:`slt.calibrate` counts the others as unstable (SGNHT: see :mod:`slt.samplers.sgnht`).
* ``stationary_test``: hyperparameters (other than ``step_size``; default: the factory's own) under which
  the sampler's ε → 0 stationary law is the local posterior. The stationary-law test
  (tests/samplers/test_sampler_stationary.py) runs every registered sampler with them.
* ``langevin_bias``: the kernel's stationary law has SGLD's first-order discretization bias, a relative
  :math:`\approx \varepsilon g c_i (1 + n\beta/m)/4` in a direction of curvature :math:`c_i` (g the step gain, m
  the batch size; :mod:`slt.calibration`). :func:`slt.estimate_llc` then predicts the bias of a fixed step from the
  curvature at w* and warns when it is large.
* ``adaptive_warmup``: the kernel tunes its own step size (and possibly more) during its first steps, its
  warmup, which belongs in the burn-in; ``step_size`` only starts the tuning (NUTS). No fixed step is ever
  used, so the small-step stationary-law test does not apply (the sampler's own tests check its law).

:func:`sampler_spec` resolves a name, a factory or a spec. A factory passed directly gets the spec it was
registered with, or, never registered, a default spec with no capabilities: ``sampler=my_factory`` works
without registering. Register a spec to declare capabilities, then pass its name:

>>> from slt.samplers import SamplerSpec, register, sampler_spec, sgld, unregister
>>> def double_step_sgld(posterior, step_size):
...     return sgld(posterior, step_size=2 * step_size)  # moves as SGLD with step 2ε
>>> spec = register(SamplerSpec("double_step_sgld", double_step_sgld, step_gain=lambda params: 2.0))
>>> sampler_spec("double_step_sgld") is spec and sampler_spec(double_step_sgld) is spec
True
>>> spec.step_gain({}), spec.full_batch_only, sampler_spec("mala").full_batch_only
(2.0, False, True)
>>> register(SamplerSpec("double_step_sgld", double_step_sgld))  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: a sampler named 'double_step_sgld' is already registered; ...
>>> unregister("double_step_sgld") is spec
True
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any

from slt.samplers.base import SamplerFactory

__all__ = ["SamplerSpec", "register", "unregister", "registered_samplers", "sampler_spec", "get_sampler"]


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """A sampler factory under its name, with the capabilities it declares (module docstring).

    Attributes:
        name: what ``sampler=`` accepts once the spec is registered.
        factory: ``factory(posterior, step_size, **hyperparameters) -> SamplingAlgorithm``; must be hashable
            (a function is): the driver compiles one program per factory.
        full_batch_only: the kernel needs the exact full-data potential (``batch_size`` must be n).
        with_acceptance: a factory for the same chains whose info also has ``acceptance_rate``.
        step_gain: ``step_gain(params) -> float``, the largest effective step per unit ε.
        calibration_check: ``calibration_check(means, params) -> bool array``, the calibration cells in the
            sampler's valid regime.
        stationary_test: hyperparameters under which the ε → 0 stationary law is the local posterior (None:
            the factory's defaults). Stored read-only; not part of equality or the hash.
        adaptive_warmup: the kernel tunes its own step size during its first steps; ``step_size`` only starts it.
        langevin_bias: the stationary law has SGLD's first-order discretization bias (the fixed-step check).

    Example:
        >>> from slt.samplers import SamplerSpec, sampler_spec, sgld
        >>> spec = SamplerSpec("my_sgld", sgld)  # not registered: capabilities left at their defaults
        >>> spec.full_batch_only, spec.with_acceptance is None, spec.step_gain is None
        (False, True, True)
        >>> mala = sampler_spec("mala")
        >>> mala.full_batch_only, sampler_spec("sgld").with_acceptance.__name__
        (True, 'sgld_with_acceptance')
    """

    name: str
    factory: SamplerFactory
    full_batch_only: bool = False
    with_acceptance: SamplerFactory | None = None
    step_gain: Callable[[Mapping[str, float]], float] | None = None
    calibration_check: Callable[[Mapping[str, Any], Mapping[str, float]], Any] | None = None
    stationary_test: Mapping[str, float] | None = dataclasses.field(default=None, compare=False)
    adaptive_warmup: bool = False
    langevin_bias: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`SamplerSpec.name` must be a non-empty string; got {self.name!r}.")
        if not callable(self.factory):
            raise ValueError(
                f"`SamplerSpec.factory` of {self.name!r} must be a callable "
                f"`factory(posterior, step_size=...) -> SamplingAlgorithm`; got {type(self.factory).__name__}."
            )
        for field in ("full_batch_only", "adaptive_warmup", "langevin_bias"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(
                    f"`SamplerSpec.{field}` of {self.name!r} must be a bool; got {getattr(self, field)!r}."
                )
        for field in ("with_acceptance", "step_gain", "calibration_check"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise ValueError(f"`SamplerSpec.{field}` of {self.name!r} must be callable or None; got {value!r}.")
        if self.stationary_test is not None:
            if not isinstance(self.stationary_test, Mapping) or "step_size" in self.stationary_test:
                raise ValueError(
                    f"`SamplerSpec.stationary_test` of {self.name!r} must be a mapping of hyperparameters other "
                    f"than `step_size`, or None; got {self.stationary_test!r}."
                )
            object.__setattr__(self, "stationary_test", types.MappingProxyType(dict(self.stationary_test)))


_REGISTRY: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec, *, replace: bool = False) -> SamplerSpec:
    """Register ``spec`` under ``spec.name`` and return it. A name already taken is an error unless ``replace``.

    Example:
        >>> from slt.samplers import SamplerSpec, register, registered_samplers, sgld, unregister
        >>> spec = register(SamplerSpec("my_sgld", sgld))  # now sampler="my_sgld" works everywhere
        >>> registered_samplers()["my_sgld"] is spec
        True
        >>> register(SamplerSpec("my_sgld", sgld), replace=True) is not spec  # replace=True: a new spec
        True
        >>> unregister("my_sgld").name
        'my_sgld'
    """
    if not isinstance(spec, SamplerSpec):
        raise ValueError(f"`register` takes a SamplerSpec; got {type(spec).__name__}.")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(
            f"a sampler named {spec.name!r} is already registered; choose another name, or pass "
            f"`replace=True` to replace it."
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> SamplerSpec:
    """Remove the sampler registered under ``name`` and return its spec.

    Example:
        >>> from slt.samplers import SamplerSpec, register, registered_samplers, sgld, unregister
        >>> spec = register(SamplerSpec("my_sgld", sgld))
        >>> unregister("my_sgld") is spec, "my_sgld" in registered_samplers()
        (True, False)
        >>> unregister("my_sgld")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: no sampler named 'my_sgld' is registered; ...
    """
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise ValueError(f"no sampler named {name!r} is registered; registered: {sorted(_REGISTRY)}.") from None


def registered_samplers() -> Mapping[str, SamplerSpec]:
    """A read-only view of the registry, name -> :class:`SamplerSpec`, in registration order (live).

    Example:
        >>> from slt.samplers import registered_samplers
        >>> {"sgld", "rmsprop_sgld", "sghmc", "sgnht", "mala", "nuts"} <= set(registered_samplers())
        True
        >>> sorted(name for name, spec in registered_samplers().items() if spec.full_batch_only)
        ['mala', 'nuts']
    """
    return types.MappingProxyType(_REGISTRY)


def sampler_spec(sampler: str | SamplerSpec | SamplerFactory) -> SamplerSpec:
    """The :class:`SamplerSpec` of a registered name, a spec (returned as is), or a factory: the spec it was
    first registered with, else a default spec with no capabilities.

    Example:
        >>> from slt.samplers import sampler_spec, sgld
        >>> sampler_spec("sgld") is sampler_spec(sgld)  # by name or by factory
        True
        >>> def my_factory(posterior, step_size):
        ...     return sgld(posterior, step_size)
        >>> spec = sampler_spec(my_factory)  # never registered: a default spec
        >>> spec.name, spec.full_batch_only
        ('my_factory', False)
    """
    if isinstance(sampler, SamplerSpec):
        return sampler
    if isinstance(sampler, str):
        try:
            return _REGISTRY[sampler]
        except KeyError:
            raise ValueError(
                f"`sampler` must be one of {sorted(_REGISTRY)} (the registered names), a SamplerSpec, or a factory "
                f"`factory(posterior, step_size=...) -> SamplingAlgorithm`; got {sampler!r}."
            ) from None
    if callable(sampler):
        for spec in _REGISTRY.values():
            if spec.factory is sampler:
                return spec
        return SamplerSpec(getattr(sampler, "__name__", None) or repr(sampler), sampler)
    raise ValueError(f"`sampler` must be a name, a SamplerSpec or a callable factory; got {type(sampler).__name__}.")


def get_sampler(sampler: str | SamplerSpec | SamplerFactory) -> SamplerFactory:
    """The factory of :func:`sampler_spec` (``sampler``): hashable, as the driver's compiled programs need.

    Example:
        >>> import slt
        >>> from slt.samplers import get_sampler
        >>> get_sampler("sghmc") is slt.samplers.sghmc, get_sampler("nuts") is slt.samplers.nuts
        (True, True)
    """
    return sampler_spec(sampler).factory
