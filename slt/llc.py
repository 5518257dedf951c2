r"""The local learning coefficient (LLC) estimator.

.. math::

    \hat\lambda(w^*) = n\beta\,\big(\mathbb E^{\beta}_{w|w^*,\gamma}[L_n(w)] - L_n(w^*)\big)

with the expectation over the localized tempered posterior (:mod:`slt.posterior`), approximated by SGLD-family
chains started at w* (Lau, Furman, Wang, Murfet, Wei, arXiv 2308.12108, Def. 3 and Sec. 4).

Two per-draw estimates are recorded; ``estimator`` chooses which one makes ``llc_mean``:

* ``"paired"`` (default): :math:`n\beta\,(L_{B_t}(w_t) - L_{B_t}(w^*))`, the loss at w* taken on the *same*
  minibatch as the draw. Both terms are unbiased for their full-data counterparts, so its mean is the same
  quantity; but the minibatch noise common to both cancels. The per-draw standard deviation drops by a
  large factor (measured in ``benchmarks/RESULTS.md``), so the chains' means are far less noisy for the
  same number of draws. This is why it is the default.
* ``"plain"``: :math:`n\beta\,(L_{B_t}(w_t) - L_n(w^*))`, the estimator of the paper and of devinterp.

:math:`L_n(w^*)` (``init_loss``) is always the mean of the per-example losses over the *full* data set,
computed in chunks, never from one minibatch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from typing import Any

import jax
import numpy as np

from slt import diagnostics
from slt._src import data_restriction, validate
from slt._src import observables as obs
from slt._src.auto import EXTENSION_KEY, EXTENSIONS, plan_extension, prepare_run
from slt._src.curvature import predicted_step_bias, top_hessian_eigenvalue
from slt._src.driver import continue_run, sample
from slt._src.observables import resolve as resolve_observables
from slt._src.results import Result
from slt._src.settings import SamplingSettings
from slt._src.validate import as_key
from slt.calibration import BIAS_TOLERANCE
from slt.samplers import sampler_spec
from slt.targets import make_target

__all__ = ["LLCResult", "SamplingWarning", "estimate_llc"]


class SamplingWarning(UserWarning):
    """A sampling run produced something the user must know about (divergent chains, ...).

    Example:
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     res = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=10.0,
        ...                            num_chains=2, num_draws=1000, num_burnin=100)  # far too large a step
        >>> any(issubclass(w.category, slt.SamplingWarning) for w in caught), res.diverged.tolist()
        (True, [True, True])
        >>> res.llc_mean  # no chain left to estimate from
        nan
    """


@dataclasses.dataclass
class LLCResult(Result):
    """Result of :func:`estimate_llc`. Arrays are numpy; shapes use C = num_chains, D = num_draws.

    Attributes:
        llc_mean: mean of ``llc_per_chain`` over the chains that did not diverge.
        llc_std: standard deviation (ddof=1) of ``llc_per_chain`` across non-diverged chains: the spread
            of one chain's estimate. The Monte-Carlo error of ``llc_mean`` itself is ``llc_mcse``.
        llc_mcse: Monte-Carlo standard error of ``llc_mean`` from the λ̂ trace (:func:`slt.diagnostics.mcse`:
            ArviZ's, from the autocorrelation, or ``llc_std / sqrt(chains)`` where that is larger).
        llc_per_chain: (C,) mean of each chain's λ̂ trace; NaN for a diverged chain.
        llc_trace: (C, D) per-draw λ̂ of the chosen ``estimator``.
        loss_trace: (C, D) minibatch loss :math:`L_{B_t}(w_t)` of each kept draw.
        loss_at_center_trace: (C, D) loss at w* on the same minibatch, :math:`L_{B_t}(w^*)`.
        burnin_loss_trace: (C, num_burnin) minibatch losses of the discarded draws.
        burnin_llc_trace: (C, num_burnin) per-draw λ̂ of the discarded draws (to judge equilibration).
        init_loss: :math:`L_n(w^*)` on the full data set.
        nbeta, localization, step_size, batch_size, num_data, sampler, estimator: the settings used.
        rhat, ess, ess_tail: rank-normalized R-hat and bulk/tail ESS of the λ̂ trace (non-diverged chains);
            like ``llc_mcse`` and ``warnings``, computed on first access.
        diverged: (C,) whether each chain's loss became non-finite.
        divergence_step: (C,) first step (counting burn-in from 0) with a non-finite loss, -1 if none.
        warnings: plain-language findings with advice (the health checks, then ``notes``).
        notes: findings the producing estimator adds (e.g. NUTS's divergent transitions).
        num_params: d, the number of moving parameters (for the λ̂ ≤ d/2 check).
        wall_time: seconds for the sampling call (compile included on a first call).
        sampler_params: the sampler's hyperparameters other than ``step_size``.
        sampler_stats: the sampler's other per-draw statistics, each (C, D) over the kept draws (e.g.
            ``acceptance_rate`` for MALA).
        observables: each ``(C, D, ...)``: what ``observables=`` asked to record at the kept draws.
        thin: steps per recorded draw.
        localization_choice: with ``localization="auto"``, the ladder of γ and the choice
            (:class:`slt._src.localization.LocalizationChoice`).
        auto: with ``step_size="auto"``, the whole choice and its cost (:class:`slt._src.auto.AutoChoice`).
        calibration: with ``step_size="auto"``, the :class:`slt.calibration.CalibrationResult` that chose
            the step size (``.first``: the calibration from w* before the warm-up); ``wall_time`` then
            includes both calibrations and the warm-up.
        restricted: with ``eval_data``: name → :class:`slt._src.data_restriction.RestrictedLLC`, the
            data-restricted LLC nβ(E_w[L_S(w)] − L_S(w*)) on each evaluation set S
            (``.llc_mean``, ``.llc_std``, ``.llc_mcse``, ``.llc_trace``).
        extensions: with draws sized by ``step_size="auto"``: each continuation of the chains from their final
            state, and why (a drifting trace, R-hat > 1.01, too few effective draws or an MCSE above the
            requested ``precision``; :func:`slt._src.auto.plan_extension`); empty when the first run passed.

    Example:
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> res = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=5e-3,
        ...                        num_chains=2, num_draws=1000, num_burnin=100)
        >>> res.llc_trace.shape, res.burnin_llc_trace.shape, res.llc_per_chain.shape
        ((2, 1000), (2, 100), (2,))
        >>> bool(abs(res.llc_mean - 1.0) < 0.3), bool(res.rhat < 1.1), res.diverged.tolist()
        (True, True, [False, False])
        >>> res.summary().splitlines()[0].startswith("LLC ")
        True
    """

    llc_mean: float
    llc_std: float
    llc_per_chain: np.ndarray
    llc_trace: np.ndarray
    loss_trace: np.ndarray
    loss_at_center_trace: np.ndarray
    burnin_loss_trace: np.ndarray
    burnin_llc_trace: np.ndarray
    init_loss: float
    nbeta: float
    localization: float
    step_size: float
    batch_size: int
    num_data: int
    sampler: str
    estimator: str
    diverged: np.ndarray
    divergence_step: np.ndarray
    wall_time: float
    sampler_params: dict = dataclasses.field(default_factory=dict)
    sampler_stats: dict = dataclasses.field(default_factory=dict)
    calibration: Any = None
    observables: dict = dataclasses.field(default_factory=dict)
    thin: int = 1
    num_params: int | None = None
    notes: list = dataclasses.field(default_factory=list)
    auto: Any = dataclasses.field(default=None, repr=False)
    localization_choice: Any = dataclasses.field(default=None, repr=False)
    extensions: list = dataclasses.field(default_factory=list)
    restricted: dict = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ diagnostics, computed on first use
    @functools.cached_property
    def _diagnostics(self) -> dict:
        """R-hat, ESS, MCSE and the health checks of the kept λ̂ draws of the chains that did not diverge.

        Computed on first access, not when the result is made: on a GPU they cost more than a small run's
        sampling, and a training-loop tracker or a benchmark often reads only ``llc_mean``."""
        healthy = ~np.asarray(self.diverged, bool)
        nan = float("nan")
        out = {"rhat": nan, "ess": nan, "ess_tail": nan, "llc_mcse": nan}
        if healthy.any():
            good = self.llc_trace[healthy]
            out["rhat"] = diagnostics.rhat(good) if healthy.sum() > 1 else nan
            out["ess"] = diagnostics.ess(good)
            out["ess_tail"] = diagnostics.ess(good, method="tail")
            out["llc_mcse"] = diagnostics.mcse(good)
        out["warnings"] = diagnostics.health_checks(
            self.llc_trace,
            self.loss_trace,
            self.loss_at_center_trace,
            nbeta=self.nbeta,
            diverged=self.diverged,
            divergence_step=self.divergence_step,
            llc_mean=self.llc_mean,
            llc_mcse=out["llc_mcse"],
            rhat=out["rhat"],
            ess=out["ess"],
            num_params=self.num_params,
            acceptance_rate=self.acceptance_rate,
        )
        return out

    @property
    def rhat(self) -> float:
        return self._diagnostics["rhat"]

    @property
    def ess(self) -> float:
        return self._diagnostics["ess"]

    @property
    def ess_tail(self) -> float:
        return self._diagnostics["ess_tail"]

    @property
    def llc_mcse(self) -> float:
        return self._diagnostics["llc_mcse"]

    @property
    def warnings(self) -> list[str]:
        """The health checks' findings (see :func:`slt.diagnostics.health_checks`), then ``notes``."""
        return self._diagnostics["warnings"] + list(self.notes)

    @property
    def acceptance_rate(self) -> np.ndarray | None:
        """(C,) mean Metropolis acceptance probability per chain, for samplers that report one."""
        acc = self.sampler_stats.get("acceptance_rate")
        return None if acc is None else np.mean(acc, axis=1)

    @property
    def num_chains(self) -> int:
        return int(self.llc_trace.shape[0])

    @property
    def num_draws(self) -> int:
        return int(self.llc_trace.shape[1])

    def to_arviz(self):
        """The run as ArviZ data: an ``InferenceData`` on arviz 0.x, an ``xarray.DataTree`` on arviz 1.x.

        Diverged chains are left out of the posterior, as they are out of ``llc_mean``: ``az.summary`` then
        describes the draws that ``llc_mean``, ``rhat`` and ``ess`` describe, instead of reporting NaN.

        * ``posterior``: ``llc``, ``loss``, ``loss_at_center`` and the ``observables`` (one named like those
          becomes ``observable_<name>``), dims ``(chain, draw, ...)``, of the chains that did not diverge; the
          ``chain`` coordinate keeps their indices in the run. When every chain diverged (``llc_mean`` is NaN)
          it holds them all.
        * ``sample_stats``, on the same chains (ArviZ's plots pair the two groups chain by chain):
          ``diverging`` (chain, draw), ArviZ's flag, True from the divergence step on, and the sampler's
          statistics (e.g. ``acceptance_rate``); and for **every** chain of the run, dimension ``all_chains``
          (0..C-1): ``diverged`` and ``divergence_step`` (-1: none), as in this result.
        * attributes of the posterior group: the settings, and ``excluded_chains``, the chains left out of it.
        """
        diverged = np.asarray(self.diverged, bool)
        kept = np.arange(self.num_chains) if diverged.all() else np.flatnonzero(~diverged)
        # records are at steps 0, thin, 2 thin, ... from the start of burn-in; the kept draws follow the burn-in's
        thin = int(getattr(self, "thin", 1))
        draw_steps = (self.burnin_llc_trace.shape[1] + np.arange(self.num_draws)) * thin
        step = np.asarray(self.divergence_step)
        diverging = diverged[:, None] & (draw_steps[None, :] >= step[:, None])
        posterior = {"llc": self.llc_trace, "loss": self.loss_trace, "loss_at_center": self.loss_at_center_trace}
        for name, value in (getattr(self, "observables", None) or {}).items():
            posterior[f"observable_{name}" if name in posterior else name] = value
        reserved = ("diverging", "diverged", "divergence_step")
        stats = {k: np.asarray(v)[kept] for k, v in self.sampler_stats.items() if k not in reserved}
        attrs = {
            "init_loss": self.init_loss,
            "nbeta": self.nbeta,
            "localization": self.localization,
            "step_size": self.step_size,
            "batch_size": self.batch_size,
            "num_data": self.num_data,
            "sampler": self.sampler,
            "estimator": self.estimator,
            "thin": thin,
            "excluded_chains": [int(c) for c in np.setdiff1d(np.arange(self.num_chains), kept)],
        }
        return diagnostics.to_arviz(
            {k: np.asarray(v)[kept] for k, v in posterior.items()},
            attrs=attrs,
            chains=kept,
            sample_stats={
                "diverging": diverging[kept],
                **stats,
                "diverged": ("all_chains", diverged),
                "divergence_step": ("all_chains", step),
            },
        )

    def summary(self) -> str:
        """A plain-text table: the estimate with MCSE, ESS bulk/tail and R-hat; then one row per chain
        (mean, std and MCSE of its λ̂ trace, its own ESS and split R-hat, mean loss, acceptance where the
        sampler reports one, divergence); then the warnings."""
        acc = self.acceptance_rate
        lines = [
            f"LLC  {self.llc_mean:.4g} ± {self.llc_std:.2g} (std over chains), MCSE {self.llc_mcse:.2g}",
            f"R-hat {self.rhat:.4f}   ESS bulk {self.ess:.0f}   ESS tail {self.ess_tail:.0f}",
            f"{self.sampler}, ε = {self.step_size:.3g}, nβ = {self.nbeta:.4g}, γ = {self.localization:.3g}, "
            f"batch {self.batch_size} of n = {self.num_data}, {self.num_chains} chains × {self.num_draws} "
            f"draws ({self.estimator} estimator), L_n(w*) = {self.init_loss:.6g}",
        ]
        if self.sampler_params:
            lines.append("sampler parameters: " + ", ".join(f"{k} = {v:.3g}" for k, v in self.sampler_params.items()))
        header = (
            f"{'chain':>5} {'llc':>10} {'std':>9} {'mcse':>8} {'ess':>7} {'ess_tail':>8} {'rhat':>7} {'mean loss':>12}"
        )
        lines.append(header + ("  accept" if acc is not None else "") + "  diverged")
        for c in range(self.num_chains):
            row = self.llc_trace[c : c + 1]
            finite = not self.diverged[c]
            stats = (
                (
                    row.std(),
                    diagnostics.mcse(row),
                    diagnostics.ess(row),
                    diagnostics.ess(row, method="tail"),
                    diagnostics.rhat(row[:, : row.shape[1] // 2 * 2].reshape(2, -1)),
                )
                if finite
                else (np.nan,) * 5
            )
            line = (
                f"{c:>5} {self.llc_per_chain[c]:>10.4g} {stats[0]:>9.3g} {stats[1]:>8.2g} {stats[2]:>7.0f} "
                f"{stats[3]:>8.0f} {stats[4]:>7.3f} {np.mean(self.loss_trace[c]):>12.6g}"
            )
            if acc is not None:
                line += f"  {acc[c]:>6.3f}"
            line += f"  step {self.divergence_step[c]}" if self.diverged[c] else "  no"
            lines.append(line)
        lines.extend(f"extended: {e}" for e in self.extensions)
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"LLCResult(llc_mean={self.llc_mean:.4g}, llc_std={self.llc_std:.3g}, rhat={self.rhat:.3f}, "
            f"ess={self.ess:.0f}, chains={self.num_chains}, draws={self.num_draws}, "
            f"diverged={int(np.sum(self.diverged))}, warnings={len(self.warnings)})"
        )

    def bits(self, tolerance, *, coarse_tolerance: float | None = None, multiplicity: int = 1):
        """The description-length reading of λ̂: bits to refine w* to loss tolerance δ (excess of L over
        L(w*), in the loss's units), ≈ λ̂·log₂(δ₀/δ), with ``bits_se`` from ``llc_mcse`` and the Bayes
        generalization error λ̂/n beside it; see :func:`slt.theory.description_length` (``multiplicity`` m
        adds the volume law's log-log term). λ̂ is the finite-temperature estimate, which sits somewhat below λ
        on singular models (SCIENCE.md §2).

        Example:
            >>> import jax, slt
            >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # λ = d/2 = 1: one bit per halving
            >>> res = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=5e-3,
            ...                        num_chains=2, num_draws=1000, num_burnin=100)
            >>> dl = res.bits(1e-3)
            >>> bool(abs(dl.bits - 3.32 * 3) < 3.0), dl.bits_se > 0, dl.generalization_error == res.llc_mean / 200
            (True, True, True)
        """
        from slt._src.description_length import description_length

        return description_length(
            self.llc_mean,
            tolerance,
            multiplicity=multiplicity,
            coarse_tolerance=coarse_tolerance,
            llc_se=self.llc_mcse,
            num_data=self.num_data,
        )

    def plot(self, **kwargs):
        """Loss and λ̂ traces per chain (see :func:`slt.plotting.plot_llc_trace`); returns the figure."""
        from slt.plotting import plot_llc_trace

        return plot_llc_trace(self, **kwargs)


# -------------------------------------------------------------------------------------------- estimator
def estimate_llc(
    model_or_loss,
    *args,
    key,
    step_size,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_burnin: int | None = None,
    batch_size: int | None = None,
    nbeta: float | None = None,
    localization: float = 1.0,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    estimator: str = "paired",
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
    precision: float = 0.02,
    bias_tolerance: float = BIAS_TOLERANCE,
    time_budget: float = 120.0,
    observables: dict | None = None,
    thin: int = 1,
    store=None,
    mesh=None,
    chain_batch_size: int | None = None,
    steps_per_chunk: int | None = None,
    eval_data: dict | None = None,
) -> LLCResult:
    r"""Estimate the local learning coefficient :math:`\hat\lambda(w^*)` with SGLD-family chains.

    Call forms::

        estimate_llc(loss_fn, params, data, key=..., step_size=...)     # loss_fn(params, batch) -> scalar
        estimate_llc(nnx_model, (x, y), loss=slt.losses.gaussian_nll, key=..., step_size=...)
        estimate_llc(linen_module, variables, (x, y), loss=..., key=..., step_size=...)

    All chains run in one jitted computation (``vmap`` over chains, ``lax.scan`` over steps) from w*, with
    the update (SGLD; Lau et al. arXiv 2308.12108 eq. (13))

    .. math::

        w \leftarrow w - \frac{\varepsilon}{2}\big[n\beta\nabla L_B(w) + \gamma(w - w^*)\big]
        + \mathcal N(0, \varepsilon I).

    Args:
        model_or_loss: ``loss_fn(params, batch)`` (batch mean of a per-example NLL), an ``nnx.Module``,
            or a linen module (see the call forms).
        key: a ``jax.random.key``. Same key, same result, bit for bit.
        step_size: ε, the SGLD step size (noise variance per step), or ``"auto"``, four stages (same
            sampler, nβ, γ, batch size and chains throughout):

            1. :func:`slt.calibrate` from w* (cells capped by the curvature at w*);
            2. a *warm-up* at ε_w, the largest stable cell at most 16× the step chosen in 1 whose predicted
               bias is at most 50%, for 3/(ε_w γ) steps: the directions the loss leaves nearly flat spread
               out at rate ε γ per step, far too slowly at the final ε (their λ̂ contribution barely
               depends on ε, see :mod:`slt._src.auto`);
            3. a second calibration, ε_w halving 8 times, its cells starting from the warm chains, so the
               fitted bias slope is that of the explored posterior rather than of the neighbourhood of w*
               (its choice may lower the first one, not raise it, unless the first was a fallback);
            4. the run, from the chosen cell's chains, with ``num_burnin`` / ``num_draws`` (where left at
               ``None``) from the mixing measured in that cell: with τ = the integrated autocorrelation time
               of λ̂ (draws per effective draw) and s the per-draw std, ``num_burnin = max(calibration
               burn-in, 20 τ)`` and ``num_draws`` such that the MCSE is about ``precision`` × |λ̂| (at
               least :func:`slt.diagnostics.ess_target` effective draws, 200 per chain, at which R-hat
               passes 1.01 in all but a few per cent of stationary runs);
            5. where ``num_draws`` was left at ``None`` and the run still fails a check that longer chains pass
               (drift, R-hat > 1.01, ESS < 400, MCSE > 1.5 × ``precision`` × |λ̂|: τ from a 1,000-draw cell
               is noisy), the chains continue from their final state (sized from the ESS, R-hat − 1 ≈
               num_chains / ESS, or the MCSE: as far as that asks, within the time left), at most twice
               (:func:`slt._src.auto.plan_extension`; ``result.extensions`` says why and by how much); a run
               that still falls short after that raises a :class:`SamplingWarning` saying how many more draws
               (and seconds) it needs.

            Warm-up, burn-in, draws and continuations are capped so they take about ``time_budget`` seconds
            (the warm-up at most a third). ``result.calibration`` holds the second calibration (``.first``,
            ``.warmup_step_size`` and ``.num_warmup`` the rest); without a warm-up (the first choice is
            already the largest admissible step, or the warm-up diverged) the first.
        num_chains, num_draws, num_burnin: chains; kept draws per chain; discarded steps before them
            (defaults 2000 and 1000 for a fixed step size).
        batch_size: minibatch size m (indices drawn uniformly with replacement on device); default
            ``min(n, 256)``. ``batch_size = n`` gives exact full-batch gradients.
        nbeta: :math:`n\beta`; ``None`` means :math:`n/\log n` with the full data size n (Lau et al.).
            devinterp's default, ``batch_size / log(batch_size)``, is a different quantity.
        localization: γ, the strength of the Gaussian pull towards w*; or ``"auto"``: the smallest γ on a
            ladder :math:`\gamma_k = \kappa_k n\beta h_{\max}` (κ from 1/10 to 1/1000) at which the chains
            stay local (no divergence, no drift, the loss not below :math:`L_n(w^*)`), see
            :mod:`slt._src.localization`; ``result.localization_choice`` holds the ladder and the evidence
            (``.summary()``, ``.plot()``). The ladder takes at most half of ``time_budget`` (it stops between
            100-step chunks), and the rest of the call the remainder.
        sampler: ``"sgld"``, ``"rmsprop_sgld"``, ``"sghmc"``, ``"sgnht"``, ``"mala"`` (full batch; see
            :mod:`slt.samplers`), or a factory ``factory(posterior, step_size=..., **params) ->
            SamplingAlgorithm``. All use SGLD's ε convention.
        sampler_params: the sampler's other hyperparameters, e.g. ``{"friction": 0.1}`` for SGHMC
            (traced: changing them does not recompile).
        estimator: ``"paired"`` (default) or ``"plain"``; see the module docstring.
        loss: for model forms, ``loss(outputs, targets) -> scalar`` (see :mod:`slt.losses`).
        where: which parameters move (weight-restricted LLC): a path predicate ``(path, leaf) -> bool``
            for pytrees and linen, an NNX filter for NNX models. Default: every (``nnx.Param``) leaf. For part of
            a leaf (one attention head in a fused projection) it returns a boolean mask of the leaf's shape or an
            index expression; :func:`slt.components` lists a model's modules and heads as such selectors (see
            :mod:`slt.targets`).
        progress: report progress after each chunk of steps (a bar on a terminal, a line per 10% otherwise),
            with an ETA that leaves out compilation.
        chunk_size: examples per vectorized chunk when computing the loss at w* on the full data set.
        precision: with ``step_size="auto"``: target relative MCSE of λ̂.
        bias_tolerance: with ``step_size="auto"``: the largest predicted relative bias of λ̂ at the chosen ε
            (:func:`slt.calibrate`'s rule; the step-size part of the error, beside ``precision``'s Monte-Carlo
            part). Lower it for a smaller, slower step.
        time_budget: with ``step_size="auto"``: seconds the whole call may take, calibrations, warm-up,
            run and continuations included (the run is sized from the per-step time the warm-up measured).
            Stages that do not fit are skipped or shortened: each calibration grid stops between chunks of 100
            steps once it has used a quarter of the budget, the ladder once it has used half. The floors
            (a 2,000-step warm-up, the run's burn-in and 2,000 draws) and the chunk in flight at each deadline
            still run, so where one step is slow the call can overrun a small budget.
        observables: what else to record at each kept draw, on device: ``{"name": spec}`` with ``spec`` a
            built-in (``"weight_norm"``, ``"group_norms"``, ``"distance"``, ``"grad_norm"``, ``"loss"``,
            ``"loss_at_center"``), ``slt.observables.per_sample_loss(probe)``, or ``fn(params, batch)``
            (see :mod:`slt.observables`). ``result.observables[name]`` has shape ``(num_chains, num_draws, ...)``.
        thin: record every ``thin``-th step: the run takes ``num_burnin + num_draws * thin`` steps and keeps
            ``num_draws`` draws.
        store: a directory: the run (draws, observables, sampler state) is written to a Zarr store after each
            chunk of steps; calling again with the same arguments resumes from the last complete chunk and
            returns the same result, bit for bit (see :mod:`slt._src.store`). Other arguments against an
            existing store raise an error naming what differs.
        mesh: a ``jax.sharding.Mesh`` with a ``"chain"`` axis (chains sharded over its devices), optionally
            ``"model"`` (parameters sharded) and ``"data"`` (data sharded).
        chain_batch_size: run the chains in groups of this size, one group after another (memory).
        steps_per_chunk: steps per compiled chunk (default: ``num_steps / 20`` within [1,000, 10,000]);
            progress and the store are updated between chunks.
        eval_data: ``{"name": data}``: data sets shaped like the training data (subsets of it, or another
            distribution) on which to evaluate the data-restricted LLC (Wang et al., arXiv 2410.02984):
            :math:`n\beta(\mathbb E_w[L_S(w)] - L_S(w^*))` with w from the posterior of the *training* data.
            The loss of every set is recorded at each kept draw by one observable (one compile for all of them,
            see :mod:`slt._src.data_restriction`); results in ``result.restricted[name]``.

    Returns:
        :class:`LLCResult`.

    Example:
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=500, seed=0)  # regular: λ = d/2 = 1
        >>> res = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=1e-3,
        ...                        num_draws=500, num_burnin=200, observables={"dist": "distance"})
        >>> res.observables["dist"].shape
        (4, 500)
        >>> bool(abs(res.llc_mean - 1.0) < 0.3)
        True

    Divergence: a chain whose loss becomes non-finite is *excluded* from ``llc_mean``, ``llc_std`` and the
    diagnostics, flagged in ``diverged`` / ``divergence_step``, listed in ``warnings``, and reported with
    a :class:`SamplingWarning`. If every chain diverges, ``llc_mean`` is NaN.

    Raises:
        ValueError: bad arguments, data, or a non-finite loss at w*; each message names the argument.
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    named_observables = resolve_observables(observables)
    if eval_data is not None:  # the data-restricted LLC: one more observable, L_S(w_t) for every set S
        eval_names, eval_obs = data_restriction.eval_observable(eval_data, target.data)
        if any(name == data_restriction.EVAL_OBSERVABLE for name, _ in named_observables):
            raise ValueError(f"`observables` name {data_restriction.EVAL_OBSERVABLE!r} is reserved with `eval_data`.")
        named_observables += ((data_restriction.EVAL_OBSERVABLE, eval_obs),)
    prepared = prepare_run(
        target,
        key,
        step_size=step_size,
        localization=localization,
        nbeta=nbeta,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        batch_size=batch_size,
        sampler=sampler,
        sampler_params=sampler_params,
        chunk_size=chunk_size,
        precision=precision,
        bias_tolerance=bias_tolerance,
        time_budget=time_budget,
        progress=progress,
        steps_per_chunk=steps_per_chunk,
        estimator=estimator,
    )
    settings, per_example, init_position = prepared.settings, prepared.per_example, prepared.init_position
    choice, localization_choice, key = prepared.choice, prepared.localization_choice, prepared.key
    steps_per_chunk, time_budget = prepared.steps_per_chunk, prepared.time_budget
    calibration = None if choice is None else choice.calibration
    validate.positive_int(thin, "thin")
    step_note = None if calibration is not None else _fixed_step_check(target, settings, key)
    driver_args = dict(
        example_losses_at_center=per_example,
        nbeta=settings.nbeta,
        localization=settings.localization,
        num_chains=settings.num_chains,
        batch_size=settings.batch_size,
        sampler=settings.sampler,
        sampler_params=settings.all_sampler_params,
        observables=(("loss_at_center", obs.BUILTIN["loss_at_center"]),) + named_observables,
        thin=thin,
        steps_per_chunk=steps_per_chunk,
        chain_batch_size=chain_batch_size,
        mesh=mesh,
        store_attrs={"estimator": "estimate_llc", **settings.describe()},
        progress=progress,
        description="LLC",
    )
    run = sample(
        target,
        key=key,
        num_steps=settings.num_burnin + settings.num_draws * thin,
        init_position=init_position,
        store=store,
        **driver_args,
    )
    burnin_records = -(-settings.num_burnin // thin)

    def summarized(run, burnin_records):
        return summarize_run(
            settings,
            run.stats["loss"],
            run.observables["loss_at_center"],
            per_example,
            run.wall_time,
            info={k: v for k, v in run.stats.items() if k != "loss"},
            num_burnin=burnin_records,
            divergence_step=run.divergence_step,
            observables={name: run.observables[name] for name, _ in named_observables},
        )

    result = summarized(run, burnin_records)
    extended = []
    if choice is not None and prepared.draws_sized_by_auto:  # a run sized from a short cell's mixing fell short
        for k in range(EXTENSIONS):
            spent = choice.calibration_seconds + choice.warmup_seconds + run.wall_time
            plan = plan_extension(
                result,
                precision=precision,
                max_draws=int((time_budget - spent) / _seconds_per_record(run)),
                drop_allowed=prepared.burnin_sized_by_auto,
            )
            position = getattr(run.final_state, "position", None)
            if plan is None or position is None:
                break
            # Whole chunks: the driver runs them anyway, and the chunk program compiled for the run is reused.
            steps = -(-plan.draws * thin // run.steps_per_chunk) * run.steps_per_chunk
            plan = dataclasses.replace(plan, draws=steps // thin)
            more = sample(
                target,
                key=jax.random.fold_in(key, EXTENSION_KEY + k),
                num_steps=plan.draws * thin,
                init_position=position,
                store=None if store is None else os.path.join(os.fspath(store), f"extension-{k + 1}"),
                **driver_args,
            )
            run = continue_run(run, more)
            burnin_records += plan.drop
            settings = dataclasses.replace(
                settings,
                num_burnin=settings.num_burnin + plan.drop * thin,
                num_draws=settings.num_draws - plan.drop + plan.draws,
            )
            result = summarized(run, burnin_records)
            joined = f", the first {plan.drop} kept draws joined the burn-in" if plan.drop else ""
            extended.append(f"{plan.reason}: continued by {plan.draws} draws{joined}")
        short_note = _still_short(result, run, precision, time_budget, len(extended), prepared.burnin_sized_by_auto)
        if short_note is not None:
            result.notes.append(short_note)
            warnings.warn(short_note, SamplingWarning, stacklevel=2)
    result.extensions = extended
    result.thin = thin
    if eval_data is not None:
        result.restricted = data_restriction.summarize_restricted(
            eval_names,
            result.observables.pop(data_restriction.EVAL_OBSERVABLE),
            data_restriction.losses_at_center(eval_obs, target),
            nbeta=settings.nbeta,
            num_burnin=0,
            diverged=result.diverged,
            sizes=np.count_nonzero(eval_obs.data[1], axis=1),
        )
    if localization_choice is not None:
        result.localization_choice = localization_choice
        result.wall_time += localization_choice.wall_time
    if step_note is not None and not result.diverged.any():  # a divergence is reported already, with advice
        result.notes.append(step_note)
        warnings.warn(step_note, SamplingWarning, stacklevel=2)
    if calibration is not None:
        result.calibration = calibration
        result.auto = choice
        result.wall_time += choice.calibration_seconds + choice.warmup_seconds
        if choice.note:
            result.notes.append(choice.note)
    return result


# A fixed step whose predicted first-order bias of λ̂ (curvature at w*) exceeds this is flagged.
STEP_BIAS_WARN = 0.2


CHECK_BATCHES = 2  # minibatches' worth of examples for the fixed-step check's curvature (at most 512)


def _seconds_per_record(run) -> float:
    """Seconds per recorded draw of a run (all chains), its compilation left out: what a continuation costs."""
    return max(run.wall_time - run.compile_time, 1e-9) / max(run.stats["loss"].shape[-1], 1)


def _still_short(result, run, precision, time_budget, continued, drop_allowed) -> str | None:
    """What a run sized by ``step_size="auto"`` still lacks after its continuations (a check that longer chains
    pass, or the MCSE), and how long the rest would take at the run's measured speed; None when nothing."""
    plan = plan_extension(result, precision=precision, max_draws=2**62, drop_allowed=drop_allowed)
    if plan is None:
        return None
    return (
        f"step_size='auto': the run still falls short after {continued} continuation(s): {plan.reason}. About "
        f"{plan.draws} more draws per chain (~{plan.draws * _seconds_per_record(run):.0f} s at this run's speed) "
        f"would fix it, more than time_budget={time_budget:g} s or the {EXTENSIONS} continuations allowed: raise "
        f"time_budget, or read λ̂ with its MCSE ({result.llc_mcse:.3g})."
    )


def _fixed_step_check(target, settings: SamplingSettings, key) -> str | None:
    """A warning, with a suggested step, when a fixed step's predicted bias exceeds :data:`STEP_BIAS_WARN`
    (samplers with SGLD's first-order bias: ``SamplerSpec.langevin_bias``). The curvature is a short power
    iteration (20 Hessian-vector products) on at most :data:`CHECK_BATCHES` minibatches' worth of examples (and
    at most 512): sized to the run's own batches, so that on a model with long examples (a GPT's sequences) it
    stays small against the sampling it checks (at 512 sequences it took 41% of a 4 × 200-draw call)."""
    spec = sampler_spec(settings.sampler)
    if not spec.langevin_bias:
        return None
    gain = float(spec.step_gain(dict(settings.sampler_params))) if spec.step_gain is not None else 1.0
    num_examples = min(512, CHECK_BATCHES * settings.batch_size)
    h_max = top_hessian_eigenvalue(
        target, key=jax.random.fold_in(key, 0x5EED), num_examples=num_examples, num_iterations=20
    )
    bias = predicted_step_bias(
        settings.step_size,
        nbeta=settings.nbeta,
        localization=settings.localization,
        hessian_top=h_max,
        batch_size=settings.batch_size,
        num_data=settings.num_data,
        gain=gain,
    )
    if not bias > STEP_BIAS_WARN:
        return None
    suggested = settings.step_size * 0.05 / bias
    return (
        f"step_size={settings.step_size:.3g} is probably too large: from the curvature at w* (Hessian radius "
        f"{h_max:.3g}, nβ h + γ = {settings.nbeta * h_max + settings.localization:.3g}) and the minibatch noise, its "
        f"discretization bias of λ̂ is predicted at up to {bias:+.0%}. A step of about {suggested:.2g} keeps it "
        "under 5%; or pass step_size='auto'."
    )


# ------------------------------------------------------------------------------------------- reduction
def summarize_run(
    settings: SamplingSettings,
    losses,
    losses_at_center,
    per_example,
    wall_time: float,
    info=None,
    num_burnin: int | None = None,
    *,
    divergence_step,
    observables: dict | None = None,
) -> LLCResult:
    """An :class:`LLCResult` from one run's ``(chain, record)`` loss traces and per-example losses at w* under
    ``settings``; ``info`` holds the sampler's other per-record statistics (e.g. ``acceptance_rate``);
    ``num_burnin`` counts records (default: the settings' burn-in steps, for an unthinned run);
    ``divergence_step`` is the driver's exact first non-finite step per chain (``Run.divergence_step``)."""
    num_burnin = settings.num_burnin if num_burnin is None else num_burnin
    return summarize(
        np.asarray(losses, dtype=np.float64),
        np.asarray(losses_at_center, dtype=np.float64),
        num_burnin=num_burnin,
        divergence_step=divergence_step,
        observables=observables,
        init_loss=float(np.mean(per_example, dtype=np.float64)),
        nbeta=settings.nbeta,
        localization=settings.localization,
        step_size=settings.step_size,
        batch_size=settings.batch_size,
        num_data=settings.num_data,
        sampler=settings.sampler_name,
        estimator=settings.estimator,
        wall_time=wall_time,
        sampler_params=dict(settings.sampler_params),
        info=info,
        num_params=settings.num_params,
    )


def summarize(
    losses: np.ndarray,
    losses_at_center: np.ndarray,
    *,
    num_burnin: int,
    init_loss: float,
    nbeta: float,
    estimator: str,
    info: dict | None = None,
    num_params: int | None = None,
    divergence_step,
    observables: dict | None = None,
    **settings,
) -> LLCResult:
    """Turn recorded ``(chain, record)`` loss traces into an :class:`LLCResult` (host side, numpy)."""
    sampler_stats = {k: np.asarray(v)[:, num_burnin:] for k, v in (info or {}).items()}
    divergence_step = np.asarray(divergence_step)
    diverged = divergence_step >= 0
    reference = losses_at_center if estimator == "paired" else init_loss
    all_llc = nbeta * (losses - reference)
    llc_trace = all_llc[:, num_burnin:]
    loss_trace = losses[:, num_burnin:]
    center_trace = losses_at_center[:, num_burnin:]
    llc_per_chain = np.where(diverged, np.nan, llc_trace.mean(axis=1))
    healthy = ~diverged
    llc_mean = float(np.mean(llc_per_chain[healthy])) if healthy.any() else float("nan")
    llc_std = float(np.std(llc_per_chain[healthy], ddof=1)) if healthy.sum() > 1 else float("nan")
    if diverged.any():
        messages = diagnostics.divergence_messages(diverged, divergence_step)
        warnings.warn(
            f"{int(diverged.sum())} of {len(diverged)} chains diverged: " + " ".join(messages),
            SamplingWarning,
            stacklevel=4,
        )
    return LLCResult(
        llc_mean=llc_mean,
        llc_std=llc_std,
        llc_per_chain=llc_per_chain,
        llc_trace=llc_trace,
        loss_trace=loss_trace,
        loss_at_center_trace=center_trace,
        burnin_loss_trace=losses[:, :num_burnin],
        burnin_llc_trace=all_llc[:, :num_burnin],
        init_loss=float(init_loss),
        nbeta=float(nbeta),
        estimator=estimator,
        diverged=diverged,
        divergence_step=divergence_step,
        sampler_stats=sampler_stats,
        num_params=num_params,
        observables={k: np.asarray(v)[:, num_burnin:] for k, v in (observables or {}).items()},
        **settings,
    )
