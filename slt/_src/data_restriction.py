r"""The data-restricted LLC: sample with the posterior of the training data, evaluate on other data.

Wang et al., arXiv 2410.02984 (the data-refined LLC): with w drawn from the localized tempered posterior of
the *training* loss :math:`L_n` (all of the data in the gradient), and :math:`L_S` the mean loss on a data set
S (a subset of the training data, or another distribution),

.. math:: \hat\lambda_S(w^*) = n\beta\,\big(\mathbb E_w[L_S(w)] - L_S(w^*)\big).

``slt.estimate_llc(..., eval_data={"name": S, ...})`` records :math:`L_S(w_t)` for every set at every kept draw
with one observable (:func:`slt.observables.subset_losses`: the sets padded to one size and stacked, so one
compiled program serves any number of them) and puts :math:`\hat\lambda_S` in ``result.restricted[name]``. On
the training set itself, :math:`\hat\lambda_S` is the ``"plain"`` estimator evaluated on the full data at every
draw: with ``batch_size = n`` it reproduces ``llc_trace`` draw for draw.

Closed form for checks (linear regression, Gaussian localization; SCIENCE.md §6): the posterior is
:math:`\mathcal N(w^*, \Sigma)` with :math:`\Sigma = (n\beta H + \gamma I)^{-1}`, and :math:`L_S` is quadratic with
Hessian :math:`H_S = X_S^\top X_S/m` and gradient :math:`g_S` at w*; as :math:`\mathbb E[w - w^*] = 0`,
:math:`\hat\lambda_S = \tfrac{n\beta}2 \operatorname{tr}(H_S\Sigma)` (and under full-batch SGLD with step ε,
Σ has eigenvalues :math:`1/(c_i(1-\varepsilon c_i/4))` in H's eigenbasis, :math:`c_i = n\beta h_i + \gamma`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import numpy as np

from slt import diagnostics
from slt._src.observables import DrawContext, Observable, subset_losses

__all__ = ["RestrictedLLC", "EVAL_OBSERVABLE", "eval_observable", "losses_at_center", "summarize_restricted"]

EVAL_OBSERVABLE = "eval_data_losses"  # the name of the observable estimate_llc adds for eval_data


@dataclasses.dataclass
class RestrictedLLC:
    r"""The data-restricted LLC on one evaluation set S (``LLCResult.restricted[name]``).

    Attributes:
        llc_mean: :math:`n\beta(\overline{L_S(w_t)} - L_S(w^*))`, the mean over non-diverged chains.
        llc_std: standard deviation (ddof=1) of ``llc_per_chain``.
        llc_mcse: Monte-Carlo standard error of ``llc_mean`` (:func:`slt.diagnostics.mcse`).
        llc_per_chain: (C,) per-chain means; NaN for a diverged chain.
        llc_trace: (C, D) per-draw :math:`n\beta(L_S(w_t) - L_S(w^*))`.
        init_loss: :math:`L_S(w^*)`.
        num_data: the size of S.
    """

    llc_mean: float
    llc_std: float
    llc_mcse: float
    llc_per_chain: np.ndarray
    llc_trace: np.ndarray
    init_loss: float
    num_data: int

    def __repr__(self) -> str:
        return (
            f"RestrictedLLC(llc_mean={self.llc_mean:.4g}, llc_std={self.llc_std:.3g}, llc_mcse={self.llc_mcse:.2g}, "
            f"num_data={self.num_data})"
        )


def eval_observable(eval_data, data) -> tuple[tuple[str, ...], Observable]:
    """The names and the :func:`subset_losses` observable of ``eval_data`` (name → data shaped like ``data``)."""
    if not isinstance(eval_data, Mapping) or not eval_data:
        raise ValueError(
            "`eval_data` must be a non-empty dict name -> data set (shaped like the training data: same pytree "
            f"structure, same shapes after the leading axis); got {type(eval_data).__name__}."
        )
    structure = jax.tree_util.tree_structure(data)
    trailing = [np.shape(x)[1:] for x in jax.tree_util.tree_leaves(data)]
    for name, subset in eval_data.items():
        if not isinstance(name, str):
            raise ValueError(f"`eval_data` keys must be strings (names); got {name!r}.")
        if jax.tree_util.tree_structure(subset) != structure:
            raise ValueError(
                f"`eval_data[{name!r}]` is not shaped like the training data: structure "
                f"{jax.tree_util.tree_structure(subset)} instead of {structure}."
            )
        shapes = [np.shape(x)[1:] for x in jax.tree_util.tree_leaves(subset)]
        if shapes != trailing:
            raise ValueError(
                f"`eval_data[{name!r}]` has per-example shapes {shapes}; the training data has {trailing}."
            )
    try:
        observable = subset_losses(list(eval_data.values()))
    except ValueError as err:
        raise ValueError(f"`eval_data`: {err}") from None
    return tuple(eval_data), observable


def _at_center_impl(loss, fn, position, frozen, data):
    return fn(DrawContext(position, frozen, position, None, None, None, loss), data)


_at_center = jax.jit(_at_center_impl, static_argnames=("loss", "fn"))


def losses_at_center(observable: Observable, target) -> np.ndarray:
    """:math:`L_S(w^*)` for every set, by the observable's own function (one compile)."""
    return np.asarray(
        jax.device_get(_at_center(target.loss, observable.fn, target.position, target.frozen, observable.data)),
        dtype=np.float64,
    )


def summarize_restricted(
    names, traces, at_center, *, nbeta: float, num_burnin: int, diverged, sizes
) -> dict[str, RestrictedLLC]:
    """``{name: RestrictedLLC}`` from the recorded ``(C, R, K)`` losses (burn-in records dropped)."""
    traces = np.asarray(traces, dtype=np.float64)[:, num_burnin:]
    healthy = ~np.asarray(diverged, bool)
    out = {}
    for k, name in enumerate(names):
        trace = nbeta * (traces[..., k] - at_center[k])
        per_chain = np.where(healthy, trace.mean(axis=1), np.nan)
        mean = float(np.mean(per_chain[healthy])) if healthy.any() else float("nan")
        std = float(np.std(per_chain[healthy], ddof=1)) if healthy.sum() > 1 else float("nan")
        mcse = float(diagnostics.mcse(trace[healthy])) if healthy.any() else float("nan")
        out[name] = RestrictedLLC(mean, std, mcse, per_chain, trace, float(at_center[k]), int(sizes[k]))
    return out
