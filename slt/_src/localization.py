r"""``localization="auto"``: the smallest γ at which the chains stay local, on a ladder scaled by the curvature.

The localized tempered posterior :math:`\propto \exp(-n\beta L_n(w) - \frac\gamma2\lVert w - w^*\rVert^2)` has two
failure modes in γ (Lau et al., arXiv 2308.12108, Sec. 4; the LLC itself is the γ → 0 limit of the local quantity):

* **γ too large** pins every direction whose curvature :math:`n\beta h_i` is below γ: a quadratic direction then
  contributes :math:`\frac12 n\beta h_i/(n\beta h_i + \gamma)` instead of ½, and λ̂ reads low (a trained MLP at
  γ = 100 > nβ h_max gave λ̂ ≈ 6 against d/2 ≈ 6,000). So γ is measured against the curvature scale:
  the ladder is :math:`\gamma_k = \kappa_k\, n\beta h_{\max}` with :math:`\kappa_k \in` :data:`LADDER`
  (1/10 … 1/1000), every rung below the stiffest direction's curvature.
* **γ too small** lets the chains leave the neighbourhood of w*: they find lower loss (w* is rarely an exact
  minimum of a trained network), drift, or diverge, and λ̂ is not the local quantity any more.

The rule. Every rung runs the same chains (one compiled grid, common random numbers) at the step whose predicted
first-order bias is :data:`LADDER_BIAS` (:func:`slt._src.curvature.predicted_step_bias`), for long enough that the
rungs down to κ = 1/300 relax (:math:`\varepsilon\gamma N \ge` :data:`RELAXED`, the flat directions relax at rate
εγ per step; at most 20,000 steps). Walking down from the largest γ, a rung is *local* when no chain diverged,
λ̂ is above 0 by 3 standard errors (the loss does not fall below :math:`L_n(w^*)`), its trace does not drift
(:data:`slt.diagnostics.DRIFT_Z`), R-hat < 1.1 and λ̂ is not above 1.5·d/2; the chosen γ is the last local rung
before the first that is not local or not relaxed. A rung whose chains diverge or run away is first run again at a
step 16× smaller (twice at most): the curvature at w* can understate what the chains meet (a saturated classifier
has almost none), so only a rung that fails at the smaller step too counts against its γ. If the largest rung is
not local, it is chosen anyway and the result says why (typically: w* is not a minimum at any scale the ladder
reaches).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from slt import diagnostics
from slt._src.curvature import predicted_step_bias, top_hessian_eigenvalue
from slt._src.driver import DEADLINE_CHUNK_STEPS, continue_trace, run_grid
from slt._src.results import Result
from slt._src.settings import SamplingSettings
from slt.samplers import sampler_spec
from slt.targets import check_loss_at_center

__all__ = ["LADDER", "LocalizationChoice", "choose_localization"]

LADDER = (1 / 10, 1 / 30, 1 / 100, 1 / 300, 1 / 1000)  # κ: γ = κ nβ h_max, largest first
LADDER_BIAS = 0.2  # predicted first-order bias of each rung's step (the ladder ranks γ; it does not estimate λ)
RELAXED = 2.0  # ε γ N: flat directions relaxed by e^-2
RELAX_THROUGH = 1 / 300  # the run is long enough for the rungs down to this κ
MIN_LADDER_STEPS = 2_000
MAX_LADDER_STEPS = 20_000
STEP_RETRIES = 2  # rungs that diverge or run away run again at a smaller step at most this often
STEP_SHRINK = 16.0
FLAT_SCALE = 10.0  # nβ h_max to scale the ladder by when the curvature at w* is 0
RHAT_RECHECK = 1.2  # a first non-local rung ruled out by R-hat alone, below this, is ruled on again after a longer run


@dataclasses.dataclass
class LocalizationChoice(Result):
    """What ``localization="auto"`` chose, with the evidence: λ̂ and stability along the ladder of γ.

    Attributes:
        localization: the chosen γ; ``chosen`` its rung.
        localizations, step_sizes: (P,) the ladder γ_k = κ_k nβ h_max (largest first) and each rung's step.
        llc_mean, llc_se, drift_z, rhat: (P,) λ̂ per rung (kept draws), its standard error from the chain means,
            the drift z of its trace and its R-hat.
        num_diverged: (P,) chains that diverged.
        relaxed: (P,) whether the run was long enough for the flat directions to relax (ε γ N ≥ 2).
        local: (P,) whether the rung passed every locality check; ``reasons``: why not, per rung ("" if it did).
        hessian_top, nbeta, num_params, num_steps, num_burnin: the curvature at w*, nβ, d, the run's length.
        note: how the choice was made, in words; ``wall_time`` in seconds.

    Example (made by :func:`slt.estimate_llc` with ``localization="auto"``):
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=500, seed=0)
        >>> res = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=1e-3,
        ...                        localization="auto", num_draws=500)
        >>> choice = res.localization_choice
        >>> bool(choice.localization == res.localization == choice.localizations[choice.chosen])
        True
    """

    localization: float
    chosen: int
    localizations: np.ndarray
    step_sizes: np.ndarray
    llc_mean: np.ndarray
    llc_se: np.ndarray
    drift_z: np.ndarray
    rhat: np.ndarray
    num_diverged: np.ndarray
    relaxed: np.ndarray
    local: np.ndarray
    reasons: list
    hessian_top: float
    nbeta: float
    num_params: int
    num_steps: int
    num_burnin: int
    note: str
    wall_time: float

    def table(self) -> str:
        lines = [
            f"{'':1}{'gamma':>10} {'step':>9} {'llc':>9} {'se':>7} {'drift_z':>7} {'rhat':>6} {'relaxed':>7}  local"
        ]
        for k in range(len(self.localizations)):
            lines.append(
                f"{'*' if k == self.chosen else ' '}{self.localizations[k]:>10.4g} {self.step_sizes[k]:>9.3g} "
                f"{self.llc_mean[k]:>9.4g} {self.llc_se[k]:>7.2g} {self.drift_z[k]:>7.1f} {self.rhat[k]:>6.3f} "
                f"{self.relaxed[k]!s:>7}  {'yes' if self.local[k] else 'no: ' + self.reasons[k]}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        return (
            f"localization='auto': γ = {self.localization:.4g} (nβ = {self.nbeta:.4g}, h_max = {self.hessian_top:.4g}, "
            f"ladder γ = κ nβ h_max; {self.num_steps} steps per rung, {self.wall_time:.1f} s)\n{self.note}\n"
            + self.table()
        )

    def __repr__(self) -> str:
        return f"LocalizationChoice(localization={self.localization:.4g}, rungs={len(self.localizations)})"

    def plot(self):
        """λ̂ (± 2 se) against γ on a log axis, non-local rungs marked, the chosen γ. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.8), constrained_layout=True)
        g = self.localizations
        ok = self.local
        ax.errorbar(g[ok], self.llc_mean[ok], 2 * self.llc_se[ok], fmt="o", color="tab:blue", label="local")
        bad = ~ok & np.isfinite(self.llc_mean)
        ax.plot(g[bad], self.llc_mean[bad], "x", color="tab:red", ms=8, label="not local / not relaxed")
        ax.axvline(self.localization, color="k", ls=":", label=f"chosen γ = {self.localization:.3g}")
        ax.axvline(self.nbeta * self.hessian_top, color="0.5", ls="--", lw=1, label="nβ h_max")
        ax.set_xscale("log")
        ax.set_xlabel("localization γ")
        ax.set_ylabel("$\\hat\\lambda$")
        ax.legend(fontsize=7)
        ax.set_title("localization='auto': λ̂ and locality against γ")
        return fig


def choose_localization(
    target,
    key,
    *,
    nbeta=None,
    batch_size=None,
    num_chains=4,
    sampler="sgld",
    sampler_params=None,
    chunk_size=1024,
    example_losses_at_center=None,
    progress=False,
    max_seconds=None,
) -> LocalizationChoice:
    """The rule of the module docstring (the ladder runs 2,000-20,000 steps, in chunks of
    :data:`slt._src.driver.DEADLINE_CHUNK_STEPS`; after ``max_seconds`` no further chunk or retry starts, and the
    note says so: rungs the shorter run did not relax cannot be chosen)."""
    start = time.perf_counter()
    deadline = None if max_seconds is None else start + float(max_seconds)
    settings = SamplingSettings.validated(
        num_data=target.num_data,
        step_size=1.0,
        num_chains=num_chains,
        batch_size=batch_size,
        nbeta=nbeta,
        localization=1.0,
        sampler=sampler,
        sampler_params=sampler_params,
        chunk_size=chunk_size,
        num_params=target.num_parameters,
    )
    spec = sampler_spec(settings.sampler)
    if spec.adaptive_warmup:
        raise ValueError(f"`localization='auto'` needs a fixed-step sampler; {settings.sampler_name!r} tunes its own.")
    per_example = example_losses_at_center
    if per_example is None:
        per_example = check_loss_at_center(target, settings.chunk_size)
    hess_key, run_key = jax.random.split(key)
    h_max = top_hessian_eigenvalue(target, key=hess_key)
    t = settings.nbeta
    scale = t * h_max
    note = ""
    if not (math.isfinite(scale) and scale > 0):
        scale = FLAT_SCALE
        note = f"the curvature at w* is 0: the ladder is scaled by nβ h_max := {FLAT_SCALE:g}. "
    gammas = scale * np.asarray(LADDER)
    gain = float(spec.step_gain(dict(settings.sampler_params))) if spec.step_gain is not None else 1.0

    def step_for(gamma):
        unit = predicted_step_bias(
            1.0,
            nbeta=t,
            localization=gamma,
            hessian_top=h_max if h_max > 0 else scale / t,
            batch_size=settings.batch_size,
            num_data=settings.num_data,
            gain=gain,
        )
        return LADDER_BIAS / unit

    steps = np.array([step_for(g) for g in gammas])
    through = int(np.searchsorted(-np.asarray(LADDER), -RELAX_THROUGH, side="right"))  # rungs down to RELAX_THROUGH

    def run_length(steps):  # long enough for the rungs down to RELAX_THROUGH to relax (ε γ N >= RELAXED)
        need = RELAXED / (steps * gammas)
        return int(np.clip(np.ceil(need[:through].max() * 1.5), MIN_LADDER_STEPS, MAX_LADDER_STEPS))

    def run_ladder(steps, num_steps, attempt, trace=None, done=0):
        """Steps ``done`` to ``num_steps`` of the ladder (continuing ``trace``), stopped between chunks past the
        deadline."""
        more = run_grid(
            target,
            keys=jnp.stack([jax.random.fold_in(run_key, attempt)] * gammas.size),
            example_losses_at_center=per_example,
            nbeta=t,
            localization=gammas,
            num_chains=settings.num_chains,
            num_steps=num_steps - done,
            batch_size=settings.batch_size,
            sampler=settings.sampler,
            sampler_params={"step_size": steps, **dict(settings.sampler_params)},
            progress=progress,
            description="localization ladder" + (f", steps {done}-{num_steps}" if done else ""),
            init_position=None if trace is None else trace.final_state.position,
            init_batched=trace is not None,
            steps_per_chunk=DEADLINE_CHUNK_STEPS,
            deadline=deadline,
        )
        trace = more if trace is None else continue_trace(trace, more, done)
        done += more.loss.shape[-1]
        cut = f"time_budget stopped the ladder after {done} of {num_steps} steps. " if done < num_steps else ""
        return trace, done, cut

    def assess(trace, num_steps):
        """Per rung: λ̂ over the last two thirds, its se, drift, R-hat; why it is not local ('' if it is)."""
        num_burnin = num_steps // 3
        llc = t * (np.asarray(trace.loss, np.float64) - np.asarray(trace.loss_at_center, np.float64))
        diverged = np.asarray(trace.divergence_step) >= 0  # (P, C)
        P = gammas.size
        mean, se, drift, rhat = (np.full(P, np.nan) for _ in range(4))
        for k in range(P):
            good = llc[k][~diverged[k]][:, num_burnin:]
            if good.shape[0] == 0:
                continue
            means = good.mean(axis=1)
            mean[k] = means.mean()
            se[k] = diagnostics.se_of_means(means) if means.size > 1 else diagnostics.mcse(good)
            drift[k] = diagnostics.drift_z(good)
            rhat[k] = diagnostics.rhat(good) if means.size > 1 else np.nan
        d_half = target.num_parameters / 2
        reasons = []
        for k in range(P):
            why = []
            if diverged[k].any():
                why.append(f"{int(diverged[k].sum())} chains diverged")
            elif not np.isfinite(mean[k]):
                why.append("λ̂ not finite")
            else:
                if mean[k] <= 0:
                    why.append(f"λ̂ = {mean[k]:.3g} ≤ 0: the loss falls below L_n(w*)")
                elif mean[k] - 3 * np.nan_to_num(se[k]) <= 0:
                    why.append(f"λ̂ = {mean[k]:.3g} ± {se[k]:.2g} not resolved above 0")
                if abs(np.nan_to_num(drift[k])) > diagnostics.DRIFT_Z:
                    why.append(f"drifting (z = {drift[k]:.1f})")
                if rhat[k] >= 1.1:
                    why.append(f"R-hat {rhat[k]:.2f}")
                if mean[k] - 3 * np.nan_to_num(se[k]) > 1.5 * d_half:
                    why.append("λ̂ above d/2")
            reasons.append("; ".join(why))
        return num_burnin, diverged, mean, se, drift, rhat, reasons

    num_steps = run_length(steps)
    for attempt in range(1 + STEP_RETRIES):
        trace, num_steps, cut = run_ladder(steps, num_steps, attempt)
        note += cut
        num_burnin, diverged, mean, se, drift, rhat, reasons = assess(trace, num_steps)
        # A rung whose chains diverge or run away (λ̂ above d/2) may have too large a step rather than too small a
        # γ: the curvature at w* can understate what the chains meet (a saturated classifier). Such rungs run
        # again at a step STEP_SHRINK times smaller (the same compiled grid); only failing again counts against γ.
        runaway = diverged.any(axis=1) | ~np.isfinite(mean) | (mean > 1.5 * target.num_parameters / 2)
        if not runaway.any() or attempt == STEP_RETRIES:
            break
        if deadline is not None and time.perf_counter() > deadline:
            note += "time_budget left no time to rerun the rungs that diverged or ran away. "
            break
        steps = np.where(runaway, steps / STEP_SHRINK, steps)
        num_steps = run_length(steps)
        note += (
            f"rungs γ = {', '.join(f'{g:.3g}' for g in gammas[runaway])} diverged or ran away: ran again at a step "
            f"{STEP_SHRINK:g}× smaller. "
        )
    P = gammas.size
    relaxed = steps * gammas * (num_steps - num_burnin) >= RELAXED
    # The first rung that is not local, if R-hat alone (and only just) rules it out, is ruled on again after the
    # ladder runs as long again: R-hat of 4 chains over a few thousand draws is noisy near its threshold, and one
    # draw of it decided between neighbouring rungs whose λ̂ differ by 30% (the TMS 5-gon: 1.102 vs 1.064).
    first_out = next((k for k in range(P) if reasons[k] or not relaxed[k]), None)
    borderline = (
        first_out is not None
        and relaxed[first_out]
        and reasons[first_out] == f"R-hat {rhat[first_out]:.2f}"
        and rhat[first_out] < RHAT_RECHECK
    )
    if borderline and (deadline is None or time.perf_counter() < deadline):
        trace, num_steps, cut = run_ladder(steps, 2 * num_steps, STEP_RETRIES + 1, trace, num_steps)
        note += cut + (
            f"γ = {gammas[first_out]:.3g} failed by R-hat {rhat[first_out]:.3f} alone: the ladder ran to "
            f"{num_steps} steps and was ruled on again. "
        )
        num_burnin, diverged, mean, se, drift, rhat, reasons = assess(trace, num_steps)
        relaxed = steps * gammas * (num_steps - num_burnin) >= RELAXED
    local = np.array([not r for r in reasons])
    chosen = 0
    for k in range(P):
        if not (local[k] and relaxed[k]):
            break
        chosen = k
    if local[0] and relaxed[0]:
        stop = chosen + 1
        why_stop = (
            "the ladder's end"
            if stop == P
            else f"γ = {gammas[stop]:.3g} " + ("is not relaxed in this run" if local[stop] else f"({reasons[stop]})")
        )
        note += f"chose the smallest γ on the ladder at which the chains stay local; below it: {why_stop}."
    else:
        note += (
            f"even the largest rung γ = {gammas[0]:.3g} (nβ h_max / 10) is not local ({reasons[0] or 'not relaxed'}): "
            "chose it anyway. If λ̂ is negative there, w* is not a local minimum at this scale: train longer."
        )
    for k in range(P):
        if local[k] and not relaxed[k]:
            reasons[k] = "not relaxed (the run is shorter than 2/(εγ) steps)"
            local[k] = False
    return LocalizationChoice(
        localization=float(gammas[chosen]),
        chosen=chosen,
        localizations=gammas,
        step_sizes=steps,
        llc_mean=mean,
        llc_se=se,
        drift_z=drift,
        rhat=rhat,
        num_diverged=diverged.sum(axis=1),
        relaxed=relaxed,
        local=local,
        reasons=reasons,
        hessian_top=float(h_max),
        nbeta=float(t),
        num_params=int(target.num_parameters),
        num_steps=num_steps,
        num_burnin=num_burnin,
        note=note,
        wall_time=time.perf_counter() - start,
    )
