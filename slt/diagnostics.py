"""Convergence diagnostics through ArviZ, on ``(chain, draw)`` arrays.

ArviZ changed its API between 0.x (``InferenceData``; the machine's Python 3.11 resolves 0.23) and 1.x
(``xarray.DataTree`` via arviz-stats; Python 3.12 resolves 1.3). The functions here give the same answers
on both: rank-normalized split R-hat and bulk/tail ESS (Vehtari et al. 2021, arXiv 1903.08008) and the
Monte-Carlo standard error of the mean.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["rhat", "ess", "mcse", "to_arviz", "ARVIZ_MAJOR"]


def _arviz():
    with warnings.catch_warnings():
        # arviz 0.2x warns at import time about its coming refactor; that is not the user's business.
        warnings.simplefilter("ignore")
        import arviz

    return arviz


ARVIZ_MAJOR = int(_arviz().__version__.split(".")[0])


def _as_chain_draw(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"diagnostics expect a (chain, draw) array; got shape {arr.shape}.")
    return arr


def _scalar(value: Any) -> float:
    # arviz 0.23 returns shape-(1,) arrays from some functions; NumPy >= 2.5 refuses float() of those
    return float(np.asarray(value).reshape(-1)[0])


def rhat(x: Any) -> float:
    """Rank-normalized split R-hat of a ``(chain, draw)`` array (NaN if undefined, e.g. < 4 draws)."""
    arr = _as_chain_draw(x)
    if arr.shape[1] < 4 or not np.all(np.isfinite(arr)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _scalar(_arviz().rhat(arr))


def ess(x: Any, method: str = "bulk") -> float:
    """Effective sample size of a ``(chain, draw)`` array; ``method`` is ``'bulk'`` or ``'tail'``."""
    arr = _as_chain_draw(x)
    if arr.shape[1] < 4 or not np.all(np.isfinite(arr)):
        return float("nan")
    kwargs: dict[str, Any] = {"method": method}
    if method == "tail" and ARVIZ_MAJOR >= 1:
        kwargs["prob"] = (0.05, 0.95)  # arviz 0.x's default tail quantiles; 1.x requires them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _scalar(_arviz().ess(arr, **kwargs))


def mcse(x: Any) -> float:
    """Monte-Carlo standard error of the mean of a ``(chain, draw)`` array."""
    arr = _as_chain_draw(x)
    if arr.shape[1] < 4 or not np.all(np.isfinite(arr)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _scalar(_arviz().mcse(arr))


def to_arviz(posterior: dict[str, Any], attrs: dict[str, Any] | None = None):
    """Labelled ArviZ data from ``{name: (chain, draw, ...) array}``.

    Returns an ``InferenceData`` on arviz 0.x and an ``xarray.DataTree`` on arviz 1.x; both work with
    ``arviz.summary``, ``arviz.plot_trace`` and friends of the installed version. ``attrs`` (the sampling
    settings) are attached to the posterior group on both.
    """
    az = _arviz()
    posterior = {k: np.asarray(v) for k, v in posterior.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_MAJOR >= 1:
            # arviz 1.x keys attrs by group; the settings belong to the posterior group
            return az.from_dict({"posterior": posterior}, attrs={"posterior": dict(attrs or {})})
        data = az.from_dict(posterior=posterior)
        data.posterior.attrs.update(attrs or {})
        return data
