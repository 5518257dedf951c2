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


def plot_llc_trace(result: Any, *, true_llc: float | None = None, title: str | None = None):
    """Per-chain traces of the minibatch loss (burn-in shaded) and of the running mean of λ̂.

    Args:
        result: an :class:`slt.LLCResult`.
        true_llc: draw a reference line at this value (e.g. a closed-form λ).
        title: figure title.
    """
    plt = _pyplot()
    fig, (ax_loss, ax_llc) = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    burn = result.burnin_loss_trace.shape[1]
    losses = np.concatenate([result.burnin_loss_trace, result.loss_trace], axis=1)
    steps = np.arange(losses.shape[1])
    for c in range(losses.shape[0]):
        ax_loss.plot(steps, losses[c], lw=0.6, alpha=0.8, label=f"chain {c}")
    ax_loss.axhline(result.init_loss, color="k", ls="--", lw=1, label="$L_n(w^*)$")
    if burn:
        ax_loss.axvspan(0, burn, color="0.9", zorder=-1, label="burn-in")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("minibatch loss $L_B(w_t)$")
    ax_loss.legend(fontsize=7, ncol=2)

    draws = np.arange(1, result.num_draws + 1)
    for c in range(result.num_chains):
        running = np.cumsum(result.llc_trace[c]) / draws
        ax_llc.plot(draws, running, lw=1, label=f"chain {c}" + (" (diverged)" if result.diverged[c] else ""))
    ax_llc.axhline(result.llc_mean, color="k", lw=1, label=f"estimate {result.llc_mean:.3g}")
    if true_llc is not None:
        ax_llc.axhline(float(true_llc), color="tab:red", ls="--", lw=1.2, label=f"true λ = {float(true_llc):.3g}")
    ax_llc.set_xlabel("kept draw")
    ax_llc.set_ylabel("running mean of $\\hat\\lambda$")
    ax_llc.legend(fontsize=7)
    fig.suptitle(title or f"LLC {result.llc_mean:.3g} ± {result.llc_std:.2g} ({result.sampler})")
    return fig
