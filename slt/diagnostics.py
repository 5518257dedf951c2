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

__all__ = ["rhat", "ess", "ess_target", "draws_factor", "mcse", "to_arviz", "ARVIZ_MAJOR"]


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
    """Rank-normalized split R-hat of a ``(chain, draw)`` array (NaN if undefined, e.g. < 4 draws).

    Example:
        >>> import numpy as np, slt
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))  # 4 chains of independent draws
        >>> bool(abs(slt.diagnostics.rhat(draws) - 1) < 0.01)
        True
        >>> bool(slt.diagnostics.rhat(draws + np.arange(4)[:, None]) > 1.1)  # chains that disagree
        True
    """
    arr = _as_chain_draw(x)
    if arr.shape[1] < 4 or not np.all(np.isfinite(arr)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _scalar(_arviz().rhat(arr))


def ess(x: Any, method: str = "bulk") -> float:
    """Effective sample size of a ``(chain, draw)`` array; ``method`` is ``'bulk'`` or ``'tail'``.

    Example:
        >>> import numpy as np, slt
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))  # 2000 independent draws
        >>> bulk, tail = slt.diagnostics.ess(draws), slt.diagnostics.ess(draws, method="tail")
        >>> bool(1500 < bulk < 2500), bool(1500 < tail < 2500)
        (True, True)
        >>> smooth = np.cumsum(draws, axis=1)  # random walks: strongly autocorrelated
        >>> bool(slt.diagnostics.ess(smooth) < 100)
        True
    """
    arr = _as_chain_draw(x)
    if arr.shape[1] < 4 or not np.all(np.isfinite(arr)):
        return float("nan")
    kwargs: dict[str, Any] = {"method": method}
    if method == "tail" and ARVIZ_MAJOR >= 1:
        kwargs["prob"] = (0.05, 0.95)  # arviz 0.x's default tail quantiles; 1.x requires them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _scalar(_arviz().ess(arr, **kwargs))


def _mcse_within(arr: np.ndarray) -> float:
    """ArviZ's MCSE of the mean (autocorrelation within the chains only); NaN below 4 draws or on non-finite."""
    if arr.shape[1] < 4 or not np.all(np.isfinite(arr)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _scalar(_arviz().mcse(arr))


def mcse(x: Any) -> float:
    r"""Monte-Carlo standard error of the mean of a ``(chain, draw)`` array.

    The larger of two estimates: ArviZ's (the autocorrelation within the chains, its sum truncated where the
    estimated autocorrelations turn noisy), and the spread of the chain means, :func:`se_of_means` (of the
    thirds of a single chain). The second sees a slow stationary component whose autocorrelation is too small
    per lag to survive the truncation under per-draw (minibatch) noise, yet moves each chain's mean: on the
    grokking MLP's last checkpoint (``benchmarks/RESULTS.md``) ArviZ gave 0.050 for 4 chains × 45,000 draws
    against 0.145 from batch means. On simulated traces, 4 chains × 20,000 draws of unit noise plus such a
    mode (AR(1), correlation time 1,000–3,000 draws, sd 0.05–0.1), ArviZ's MCSE was 0.38–0.42 of the true
    one and covered the error within ±2 MCSE in 51–63% of runs; the larger of the two, 0.91–0.93 and 87%
    (a 3-degree-of-freedom spread: ±2 of it covers 86% by Student's t; ``benchmarks/mcse_coverage.py``). On
    independent draws the larger of the two is 13% above the true error on average (18% on AR(1) with
    correlation 0.9): the price of the floor.

    Example:
        >>> import numpy as np, slt
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))  # independent: MCSE ≈ 1 / sqrt(2000)
        >>> bool(0.015 < slt.diagnostics.mcse(draws) < 0.03)
        True
        >>> slow = np.repeat(np.random.default_rng(1).normal(size=(4, 1)), 500, axis=1)  # each chain offset
        >>> bool(slt.diagnostics.mcse(draws + 0.2 * slow) > 0.05)  # the offsets' spread, not 1 / sqrt(2000)
        True
    """
    arr = _as_chain_draw(x)
    within = _mcse_within(arr)
    if not np.isfinite(within):
        return within
    if arr.shape[0] > 1:
        between = se_of_means(arr.mean(axis=1))
    else:
        third = arr.shape[1] // 3
        between = se_of_means(arr[0, : 3 * third].reshape(3, third).mean(axis=1))
    return float(max(within, between))  # both finite: within needs ≥ 4 finite draws, so ≥ 2 means


def to_arviz(
    posterior: dict[str, Any],
    attrs: dict[str, Any] | None = None,
    *,
    sample_stats: dict[str, Any] | None = None,
    chains: Any = None,
):
    """Labelled ArviZ data from ``{name: (chain, draw, ...) array}``.

    Returns an ``InferenceData`` on arviz 0.x and an ``xarray.DataTree`` on arviz 1.x; both work with
    ``arviz.summary``, ``arviz.plot_trace`` and friends of the installed version. ``attrs`` (the sampling
    settings) are attached to the posterior group on both.

    Args:
        posterior: ``{name: (chain, draw, ...)}``.
        attrs: attributes of the posterior group.
        sample_stats: the ``sample_stats`` group: ``(chain, draw, ...)`` arrays of the posterior's chains (e.g.
            ArviZ's boolean ``diverging``), or ``(dims, array)`` pairs, xarray's form, for variables on other
            dimensions (their coordinates are 0..size-1).
        chains: the ``chain`` coordinate (default 0..C-1), e.g. the indices of the chains kept when some are
            left out of the posterior.

    Example:
        >>> import numpy as np, slt
        >>> draws = np.random.default_rng(0).normal(size=(4, 500))
        >>> data = slt.diagnostics.to_arviz({"llc": draws}, attrs={"nbeta": 10.0})
        >>> type(data).__name__ in ("InferenceData", "DataTree")  # arviz 0.x / 1.x
        True
        >>> dict(data["posterior"]["llc"].sizes), data["posterior"].attrs["nbeta"]
        ({'chain': 4, 'draw': 500}, 10.0)
    """
    az = _arviz()
    posterior = {k: np.asarray(v) for k, v in posterior.items()}
    stats = sample_stats or {}
    per_draw = {k: np.asarray(v) for k, v in stats.items() if not isinstance(v, tuple)}
    labelled = {k: v for k, v in stats.items() if isinstance(v, tuple)}
    coords = None if chains is None else {"chain": np.asarray(chains)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_MAJOR >= 1:
            # arviz 1.x keys attrs by group; the settings belong to the posterior group
            groups = {"posterior": posterior, **({"sample_stats": per_draw} if per_draw else {})}
            data = az.from_dict(groups, coords=coords, attrs={"posterior": dict(attrs or {})})
            if labelled:
                data["sample_stats"] = _with_labelled(data["sample_stats"].to_dataset() if per_draw else None, labelled)
            return data
        data = az.from_dict(posterior=posterior, sample_stats=per_draw or None, coords=coords)
        data.posterior.attrs.update(attrs or {})
        if labelled:
            if per_draw:
                _with_labelled(data.sample_stats, labelled)
            else:
                data.add_groups(sample_stats=_with_labelled(None, labelled))
        return data


def _with_labelled(dataset, labelled: dict[str, tuple]):
    """``dataset`` (or a new one) with the ``(dims, array)`` variables added, each new dimension indexed 0..n-1."""
    import xarray as xr

    dataset = xr.Dataset() if dataset is None else dataset
    for name, (dims, value) in labelled.items():
        value = np.asarray(value)
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        for dim, size in zip(dims, value.shape):
            if dim not in dataset.coords:
                dataset.coords[dim] = np.arange(size)
        dataset[name] = (dims, value)
    return dataset


# ------------------------------------------------------------------------------------------ chain health
#: Below this mean Metropolis acceptance probability a Langevin step is too large for the local geometry
#: (Lau et al., arXiv 2308.12108, App. on hyperparameters, aim for MALA acceptance of about 0.9-0.95 when
#: judging an SGLD step size by it). Between 0.5 and 0.8 the discretization bias is already visible.
ACCEPTANCE_LOW = 0.8
#: Bulk ESS below this makes the MCSE itself unreliable (Vehtari et al. 2021 recommend > 100 per chain,
#: 400 for 4 chains).
ESS_MIN = 400
#: Bulk ESS per chain at which rank-normalized split R-hat stays below 1.01 in all but a few per cent of runs.
#: For stationary chains R-hat − 1 ≈ num_chains / ESS (simulated AR(1) chains, 2-16 chains: the median of
#: (R-hat − 1)·ESS is 0.9-1.0 × num_chains), so at 100 effective draws per chain (ESS_MIN for 4 chains) R-hat
#: exceeds 1.01 in about 40% of runs that are merely short, and at 200 per chain in 2-7%.
ESS_PER_CHAIN_FOR_RHAT = 200
#: R-hat above this fails the health check (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: |z| of the first-third vs last-third difference above which the trace is called drifting (Geweke 1992,
#: with autocorrelation-aware standard errors; 4 keeps the false-alarm rate of a stationary run tiny).
DRIFT_Z = 4.0


def ess_target(num_chains: int) -> int:
    """Bulk ESS a run of ``num_chains`` chains needs to pass both checks, ESS ≥ ``ESS_MIN`` and R-hat ≤ 1.01,
    with high probability: ``max(ESS_MIN, ESS_PER_CHAIN_FOR_RHAT · num_chains)``.

    Example:
        >>> import slt
        >>> slt.diagnostics.ess_target(1), slt.diagnostics.ess_target(4), slt.diagnostics.ess_target(8)
        (400, 800, 1600)
    """
    return int(max(ESS_MIN, ESS_PER_CHAIN_FOR_RHAT * int(num_chains)))


def draws_factor(rhat: float, ess: float, num_chains: int) -> float:
    """How many times its draws a run of stationary chains needs for a bulk ESS of :func:`ess_target` and half its
    R-hat − 1 above 1 (R-hat − 1 ≈ num_chains / ESS ∝ 1/N): ``max(1, ess_target / ess, (R-hat − 1) / 0.005)``,
    the R-hat term only above 1.01; ``inf`` when the ESS is undefined.

    Example:
        >>> import slt
        >>> slt.diagnostics.draws_factor(1.017, 200.0, 4)  # 4 chains: 800 effective draws needed
        4.0
        >>> slt.diagnostics.draws_factor(1.004, 2000.0, 4)  # nothing short
        1.0
    """
    by_ess = ess_target(num_chains) / ess if np.isfinite(ess) and ess > 0 else float("inf")
    by_rhat = (rhat - 1) / ((RHAT_MAX - 1) / 2) if np.isfinite(rhat) and rhat > RHAT_MAX else 0.0
    return float(max(1.0, by_ess, by_rhat))


def se_of_means(means: Any) -> float:
    """Standard error of the average of independent means (of chains, or of batches): sd(ddof=1)/√count; NaN for
    fewer than two.

    Example:
        >>> import slt
        >>> slt.diagnostics.se_of_means([1.0, 2.0, 3.0, 4.0])  # sd 1.29 over √4
        0.6454972243679028
    """
    arr = np.asarray(means, dtype=float).ravel()
    return float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else float("nan")


def drift_z(x: Any) -> float:
    r"""Geweke-style z-score of the mean of the last third minus the mean of the first third of the draws.

    Pooled over chains. The standard error of the difference :math:`\bar d` is the larger of two estimates:
    ArviZ's MCSE of each third (autocorrelation within a third counts), and, with two or more chains, the spread
    of the per-chain differences :math:`d_c`, :math:`\mathrm{sd}(d_c)/\sqrt{C}`. The second sees what the first
    cannot: a stationary component slower than a third. Its autocorrelation is too small per lag to survive the
    truncation of the ESS estimator under the per-draw (minibatch) noise, yet it moves each chain's thirds apart,
    in random directions from chain to chain. A relaxation common to the chains (a burn-in too short) moves every
    :math:`d_c` the same way and keeps z large. Measured on the grokking MLP's final checkpoint
    (``benchmarks/RESULTS.md``): 4 chains × 45,000 draws, ArviZ's MCSE 0.050 against 0.145 from batch means of
    10,000 draws, and records of a tracked run flagged at z = 4-7 in both directions.

    Example:
        >>> import numpy as np, slt
        >>> rng = np.random.default_rng(0)
        >>> noise = rng.normal(size=(4, 3000))
        >>> slow = np.repeat(rng.normal(size=(4, 3)), 1000, axis=1)  # a mode slower than a third
        >>> abs(slt.diagnostics.drift_z(noise + 0.1 * slow)) < 4.0  # stationary: not drifting
        True
        >>> relaxing = noise + 0.3 * np.exp(-np.arange(3000) / 1000.0)  # every chain relaxes the same way
        >>> slt.diagnostics.drift_z(relaxing) < -4.0
        True
    """
    arr = _as_chain_draw(x)
    third = arr.shape[1] // 3
    if third < 4:
        return float("nan")
    first, last = arr[:, :third], arr[:, -third:]
    se = np.hypot(_mcse_within(first), _mcse_within(last))
    if arr.shape[0] > 1:
        se = max(se, se_of_means(last.mean(axis=1) - first.mean(axis=1)))
    if not np.isfinite(se) or se == 0:
        return float("nan")
    return float((last.mean() - first.mean()) / se)


def divergence_messages(diverged: np.ndarray, divergence_step: np.ndarray) -> list[str]:
    """One line per diverged chain: which chain, at which step, and what to do."""
    return [
        f"chain {c} diverged at step {divergence_step[c]} (loss became non-finite) and is excluded; "
        "lower step_size (or raise localization)."
        for c in np.flatnonzero(np.asarray(diverged, bool))
    ]


def health_checks(
    llc_trace: np.ndarray,
    loss_trace: np.ndarray,
    loss_at_center_trace: np.ndarray,
    *,
    nbeta: float,
    diverged: np.ndarray,
    divergence_step: np.ndarray,
    llc_mean: float,
    llc_mcse: float,
    rhat: float,
    ess: float,
    num_params: int | None = None,
    acceptance_rate: np.ndarray | None = None,
) -> list[str]:
    """Plain-language findings about one LLC run, each with advice; empty when nothing looks wrong.

    Checks, in order: divergent chains (which chain, which step); every chain diverged; the loss falling
    well below the loss at w* (w* is not a local minimum); a negative estimate; λ̂ above d/2, which no
    learning coefficient of an analytic model can reach (the step is too large); a trace still drifting
    (first vs last third of the kept draws, :func:`drift_z`); R-hat > 1.01; bulk ESS too small for the
    MCSE to be trusted; Metropolis acceptance far from the healthy range (when the sampler reports it).

    Arrays are ``(chain, draw)`` over the kept draws; ``diverged``/``divergence_step`` are per chain.
    """
    diverged = np.asarray(diverged, bool)
    healthy = ~diverged
    messages = divergence_messages(diverged, divergence_step)
    if not healthy.any():
        messages.append("every chain diverged: there is no estimate. Lower step_size by 10x and retry.")
        return messages
    llc, loss, center = llc_trace[healthy], loss_trace[healthy], loss_at_center_trace[healthy]
    chains = np.flatnonzero(healthy)

    # Loss well below the loss at w*: per chain, the paired difference over the last third, in units of
    # its own standard error (batch means of 20 batches: autocorrelation-robust, cheap).
    third = max(1, llc.shape[1] // 3)
    diff = (loss - center)[:, -third:]
    for c, row in zip(chains, diff):
        batches = np.array_split(row, min(20, row.size))
        means = np.array([b.mean() for b in batches])
        se = se_of_means(means) if means.size > 1 else np.inf
        if row.mean() < 0 and row.mean() < -4 * se:
            messages.append(
                f"chain {c}: the loss fell below the loss at w* (by {-row.mean():.3g} on average over the last "
                "third of the draws): w* is not a local minimum at this scale. Train longer, or raise "
                "localization."
            )
    if np.isfinite(llc_mean) and llc_mean < 0:
        messages.append(
            f"the estimate is negative ({llc_mean:.3g}): the chains found lower loss than at w*, so w* is "
            "not a local minimum at this scale. Train longer, or raise localization."
        )
    if num_params and np.isfinite(llc_mean):
        bound = num_params / 2
        if llc_mean - 3 * (llc_mcse if np.isfinite(llc_mcse) else 0.0) > bound:
            messages.append(
                f"the estimate {llc_mean:.4g} exceeds d/2 = {bound:g}, which no learning coefficient of an "
                "analytic model can reach: usually the step size is too large (discretization inflates λ̂), "
                "so lower step_size or use slt.calibrate. (A non-analytic model, e.g. with ReLUs, can exceed "
                "d/2 at finite n even under exact sampling.)"
            )
    z = drift_z(llc)
    if np.isfinite(z) and abs(z) > DRIFT_Z:
        messages.append(
            f"the λ̂ trace is still drifting (last third vs first third of the kept draws: z = {z:.1f}): "
            "the chains have not equilibrated. Increase num_burnin (and num_draws)."
        )
    if np.isfinite(rhat) and rhat > RHAT_MAX:
        # For stationary chains R-hat − 1 ≈ num_chains / ESS; the bulk ESS counts between-chain variance too, so
        # the relation cannot tell short chains from chains stuck apart: say what either would need.
        more = draws_factor(rhat, ess, chains.size)
        messages.append(
            f"R-hat of the λ̂ trace is {rhat:.3f} > {RHAT_MAX}: chains disagree. For stationary chains "
            f"R-hat − 1 ≈ num_chains / ESS, so about {more:.1f}× more draws would bring it under {RHAT_MAX} if the "
            "chains are merely short; if they sit in different regions, run a longer burn-in or check the step size "
            "and localization."
        )
    if np.isfinite(ess) and ess < ESS_MIN:
        messages.append(
            f"bulk ESS is {ess:.0f} < {ESS_MIN}: too few effective draws for the reported MCSE "
            f"({llc_mcse:.2g}) to be reliable. Run more draws or chains."
        )
    if acceptance_rate is not None:
        acc = np.asarray(acceptance_rate)[healthy]
        mean_acc = float(np.mean(acc))
        if mean_acc < ACCEPTANCE_LOW:
            messages.append(
                f"mean Metropolis acceptance is {mean_acc:.2f} < {ACCEPTANCE_LOW}: the step is too large for "
                "the local geometry (λ̂ biased upwards). Lower step_size."
            )
    return messages
