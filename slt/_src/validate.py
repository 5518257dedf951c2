"""Argument validators shared by the estimators: each checks one argument and names it in its error.

Every function takes the value and the argument's name and returns the value in its canonical type (``int``,
``float``, a typed key), or raises ``ValueError`` with a message that says what was expected and what came.
Booleans are not integers here (``True`` is no step count).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_key",
    "finite_float",
    "int_at_least",
    "localization",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
    "sampler_params",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_int(value: Any, name: str) -> int:
    """An integer >= 1."""
    if not _is_int(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def non_negative_int(value: Any, name: str) -> int:
    """An integer >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer; got {value!r}.")
    return int(value)


def int_at_least(value: Any, name: str, minimum: int) -> int:
    """An integer >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def positive_float(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    """A finite number > 0 (or None, passed through, with ``allow_none``)."""
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        kind = "a positive number or None" if allow_none else "a positive number"
        raise ValueError(f"`{name}` must be {kind}; got {value!r}.") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
    return out


def finite_float(value: Any, name: str) -> float:
    """A finite number."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number; got {value!r}.") from None
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be finite; got {out}.")
    return out


def probability(value: Any, name: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number in (0, 1); got {value!r}.") from None
    if not 0.0 < out < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1); got {value!r}.")
    return out


def localization(value: Any) -> float:
    """γ, the strength of the pull towards w*: a finite number >= 0."""
    try:
        gamma = float(value)
    except (TypeError, ValueError):
        gamma = float("nan")
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"`localization` (γ) must be a finite number >= 0; got {value!r}.")
    return gamma


def sampler_params(params: Any) -> tuple:
    """A sampler's extra hyperparameters (a dict from name to a finite number, ``step_size`` excluded), as
    sorted ``(name, value)`` pairs; ``None`` gives ``()``."""
    if params is None:
        return ()
    if not isinstance(params, dict):
        raise ValueError(f"`sampler_params` must be a dict of name -> number; got {type(params).__name__}.")
    out = []
    for name, value in sorted(params.items()):
        if name == "step_size":
            raise ValueError("pass `step_size` as its own argument, not inside `sampler_params`.")
        out.append((name, finite_float(value, f"sampler_params[{name!r}]")))
    return tuple(out)


def as_key(key: Any, argname: str = "key") -> jax.Array:
    """Accept a typed ``jax.random.key`` (preferred) or a legacy ``PRNGKey`` uint32 array."""
    if key is None:
        raise ValueError(f"`{argname}` is required: pass jax.random.key(seed); there is no default key.")
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"`{argname}` must be a single key (shape ()); got shape {key.shape}.")
        return key
    arr = np.asarray(key)
    if arr.dtype == np.uint32 and arr.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(arr))
    raise ValueError(f"`{argname}` must be a jax.random.key(seed); got {type(key).__name__}.")
