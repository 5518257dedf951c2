"""Plots of results. Computing and plotting are separate: every function takes a result and returns a
matplotlib ``Figure`` without showing it (save it with ``fig.savefig(path)``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_llc_trace"]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        import os

        if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return x
    kernel = np.ones(window) / window
    return np.stack([np.convolve(row, kernel, mode="valid") for row in x])


def plot_llc_trace(result: Any, *, true_llc: float | None = None, title: str | None = None):
    """Per chain: the minibatch loss per draw, λ̂ per draw (moving averages, burn-in shaded) and the
    running mean of λ̂ over kept draws.

    The loss panel shows the chains leaving w* (dashed: L_n(w*)) and settling; a loss ending below the dashed
    line means w* is not a local minimum. The middle panel shows whether λ̂ has equilibrated (a flat band
    after burn-in, no drift); the right one how the estimate settles. Diverged chains are marked in the
    legend.

    Args:
        result: an :class:`slt.LLCResult`.
        true_llc: draw a reference line at this value (e.g. a closed-form λ).
        title: figure title.
    """
    plt = _pyplot()
    fig, (ax_loss, ax_draw, ax_mean) = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
    burn = result.burnin_llc_trace.shape[1]
    per_draw = np.concatenate([result.burnin_llc_trace, result.llc_trace], axis=1)
    window = max(1, per_draw.shape[1] // 200)
    smooth = _moving_average(per_draw, window)
    steps = np.arange(smooth.shape[1]) + (window - 1) / 2
    labels = [f"chain {c}" + (" (diverged)" if result.diverged[c] else "") for c in range(result.num_chains)]

    losses = _moving_average(np.concatenate([result.burnin_loss_trace, result.loss_trace], axis=1), window)
    for c in range(losses.shape[0]):
        ax_loss.plot(steps, losses[c], lw=0.8, alpha=0.9)
    if burn:
        ax_loss.axvspan(0, burn, color="0.9", zorder=-1)
    ax_loss.axhline(result.init_loss, color="k", ls="--", lw=1, label="$L_n(w^*)$")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"minibatch loss (moving average of {window})")
    ax_loss.legend(fontsize=7)
    for c in range(per_draw.shape[0]):
        ax_draw.plot(steps, smooth[c], lw=0.8, alpha=0.9, label=labels[c])
    if burn:
        ax_draw.axvspan(0, burn, color="0.9", zorder=-1, label="burn-in")
    if true_llc is not None:
        ax_draw.axhline(float(true_llc), color="tab:red", ls="--", lw=1.2)
    ax_draw.set_xlabel("step")
    ax_draw.set_ylabel(f"$\\hat\\lambda$ per draw (moving average of {window})")
    ax_draw.legend(fontsize=7, ncol=2)

    draws = np.arange(1, result.num_draws + 1)
    for c in range(result.num_chains):
        ax_mean.plot(draws, np.cumsum(result.llc_trace[c]) / draws, lw=1, label=labels[c])
    ax_mean.axhline(result.llc_mean, color="k", lw=1, label=f"estimate {result.llc_mean:.3g}")
    if true_llc is not None:
        ax_mean.axhline(float(true_llc), color="tab:red", ls="--", lw=1.2, label=f"true λ = {float(true_llc):.3g}")
    ax_mean.set_xlabel("kept draw")
    ax_mean.set_ylabel("running mean of $\\hat\\lambda$")
    ax_mean.legend(fontsize=7)
    fig.suptitle(title or f"LLC {result.llc_mean:.3g} ± {result.llc_std:.2g} ({result.sampler}, {result.estimator})")
    return fig
