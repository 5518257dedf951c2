r"""Automatic step-size calibration for LLC estimation.

What goes wrong with a hand-picked step size ε, and how each failure shows up in a grid over ε (all cells
run from w* with the same random numbers; on accelerators grid × chains in one jit, on CPU cell by cell in the
program of a plain run, :func:`slt._src.driver.default_cell_batch_size`):

* **Too large: bias upwards, then divergence.** For a quadratic loss, full-batch SGLD's stationary λ̂ is
  :math:`\sum_i t h_i / [2 c_i (1 - \varepsilon c_i/4)]` with :math:`c_i = t h_i + \gamma`, :math:`t = n\beta`
  (:func:`slt.models.regression.quadratic_llc`): a relative bias :math:`\approx \varepsilon c_i / 4`. Minibatch
  gradients add noise of variance :math:`\varepsilon^2 t^2 v_i / (4m)` per step (:math:`v_i` the per-example
  gradient variance, m the batch size); the stationary variance of direction i becomes
  :math:`(1 + \varepsilon t^2 v_i/(4m)) / (c_i (1 - \varepsilon c_i/4))`. Near a well-specified minimum
  :math:`v_i \approx h_i`, so the bias is :math:`\approx (\varepsilon c_i/4)(1 + n\beta/m)`: with the default
  :math:`n\beta = n/\log n` and m = 100 it is ten times the deterministic one. Either way λ̂ grows
  *linearly in ε* at small ε, and the chain is unstable beyond :math:`\varepsilon c_{\max} = 4`.
* **Too small: not explored.** Directions the loss does not constrain relax at rate
  :math:`\varepsilon\gamma/2` per step; a chain started at w* whose burn-in is short against
  :math:`2/(\varepsilon\gamma)` is still spreading out, its λ̂ trace drifts upwards, and λ̂ comes out low.

The choice rule (:func:`calibrate`):

1. **Cap.** The top Hessian eigenvalue :math:`h_{\max}` of :math:`L_n` at w* (power iteration on
   Hessian-vector products) gives :math:`c_{\max} = n\beta h_{\max} + \gamma`; the grid starts at
   :math:`2/c_{\max}` (half the stability limit) and halves ``num_step_sizes - 1`` times.
2. **Stable** cells: no chain diverged, here, in a smaller cell or in one at most twice as large (a cell
   next to a diverging one is marginal: a run much longer than the cell meets the excursions that diverged
   there), λ̂ finite and not clearly above d/2 (no analytic model's LLC exceeds it; "clearly" = by more than
   50% plus 3 standard errors, :data:`D_HALF_MARGIN`: a regular model sits at d/2, and a cell 10-50% above it
   is biased, which the fit below measures, not runaway; with a 10% margin a regular model kept only its three
   smallest cells and a noisy line through them), and Metropolis acceptance (where the sampler reports it) at
   least 0.5, and the sampler's own regime check where its spec declares one (``calibration_check``; SGNHT:
   the thermostat not busy removing minibatch heat, see :mod:`slt.samplers.sgnht`).
3. **Equilibrated** cells: the λ̂ trace of the kept draws is not drifting (|z| of last third vs first third
   below :data:`slt.diagnostics.DRIFT_Z`) and R-hat < 1.1.
4. **Plateau.** Over the stable, equilibrated cells, fit :math:`\hat\lambda(\varepsilon) = a + b\varepsilon`
   (weighted least squares; the first-order behaviour above). The chosen ε is the
   *largest* cell whose predicted bias is at most ``bias_tolerance``: large enough to explore,
   small enough that λ̂ has plateaued as ε shrinks. If no cell qualifies, the smallest stable cell is taken
   and the result says so.

Limits, measured (``benchmarks/RESULTS.md``). The line is a chord where λ̂(ε) curves: upwards for SGLD at
large ε c (second-order discretization bias) and for the momentum samplers on singular models, where it
understates the slope near the chosen cell (SGHMC on a rank-0 DLN: the run reads 11% above the exact
posterior at a predicted 3%); downwards for SGNHT, whose thermostat absorbs more minibatch heat the larger
ε, hence its regime check in step 2. Two alternatives were tried and dropped: refitting on the cells the
line puts near the tolerance cycles and, on convex curves, picks steps with 15-20% bias; a line through each
candidate and the few cells below it is too noisy with cells of a few thousand steps, and the smallest cells
of a grid started at w* (not yet explored, λ̂ still low) fake a slope.

The cells also understate the slope for SGLD itself on singular models: they see the part of the bias that
settles within their 2,000 steps, not a slow part that settles over ~1/(εγ) steps. On DLN 10-5-10 r2 (γ = 1) long
runs at seven steps give λ̂(ε) = 27.67 (NUTS) + ~9.6·10⁴ ε near the chosen cell, where the grid's line says
5.8·10⁴: at its chosen ε the bias predicted 4.0%, measured 6.9%; after a drop from the warm-up's step, λ̂ settles
within 500 steps to 29.0 and then climbs to 31 over ~30,000 (``benchmarks/RESULTS.md``). Hence the default
:data:`BIAS_TOLERANCE` of 3%, below the 5% that the estimates should be within: on the DLN suite the runs are then
within 4.4% of the exact posterior (median 1.5%; at 5%: max 8.7%, median 4.7%) and ``wbic`` within 3% of its
closed forms (at 5%: +5.7%); the small neural networks are within 4.1% of NUTS. The price is smaller steps, whose
longer mixing the continuations of a run absorb within ``time_budget`` (the grokking MLP's records: at 5%, 2,000
draws for 13 of 21 and 15,950-20,100 for 8; at 3%, 2,000 for 9 and 10,400-62,000 for the 12 that were continued,
all 21 passing).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt import diagnostics
from slt._src import validate
from slt._src.curvature import hessian_radius, predicted_step_bias, top_hessian_eigenvalue
from slt._src.driver import run_grid
from slt._src.results import Result
from slt._src.settings import SamplingSettings
from slt._src.validate import as_key
from slt.samplers import sampler_spec
from slt.targets import Target, check_loss_at_center, make_target

__all__ = [
    "BIAS_TOLERANCE",
    "CalibrationResult",
    "CalibrationSweep",
    "calibrate",
    "hessian_radius",
    "top_hessian_eigenvalue",
]

# The default largest predicted relative bias of λ̂ at the chosen ε, for every estimator that chooses a step: 3%, so
# that the measured bias stays within 5% where the grid's line understates it on singular models (by up to ~1.7×:
# module docstring).
BIAS_TOLERANCE = 0.03


@dataclasses.dataclass
class CalibrationResult(Result):
    """Result of :func:`calibrate`: one row per grid cell (G cells), and the chosen step size.

    Example (made by :func:`calibrate`):
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> cal = slt.calibrate(p.loss_fn, p.params, p.data, key=jax.random.key(0), num_draws=200,
        ...                     num_step_sizes=4, num_chains=2)
        >>> cal.summary().splitlines()[0].startswith("calibration (sgld")
        True

    Attributes:
        step_size: the chosen ε.
        chosen: index of the chosen cell.
        step_sizes: (G,) the grid, largest first.
        llc_mean, llc_se, llc_mcse: (G,) λ̂ per cell, its standard error from the spread of chain means,
            and :func:`slt.diagnostics.mcse`; ``draw_std``: the per-draw standard deviation of λ̂.
        rhat, ess, drift_z: (G,) diagnostics of each cell's λ̂ trace.
        num_diverged: (G,) chains that diverged.
        acceptance: (G,) mean Metropolis acceptance probability (NaN when the sampler reports none).
        stable, equilibrated: (G,) the rule's cell classes (see the module docstring).
        predicted_bias: (G,) :math:`b\\varepsilon/a` from the fitted line (NaN where no fit).
        slope, intercept: the fitted :math:`b, a`.
        sampler_stats: the mean over kept draws of each of the sampler's per-step statistics, (G,) each
            (e.g. ``thermostat`` for SGNHT, ``acceptance_rate``).
        hessian_top: :math:`h_{\\max}` of :math:`L_n` at w*; ``curvature_cap`` = :math:`2/(n\\beta h_{\\max}+\\gamma)`.
        bias_tolerance, nbeta, localization, batch_size, num_chains, num_draws, num_burnin, sampler: settings
            (each cell ran ``num_burnin + num_draws`` steps and kept the last ``num_draws``).
        note: how the choice was made, in words.
        per_step_seconds: wall time per step of one cell (compile included; an upper bound).
        gradients_per_step: 2 when the cells ran the sampler's ``with_acceptance`` variant, else 1.
        wall_time: seconds for the whole calibration.
        by_rule: whether a cell met the plateau rule (False: a fallback, see ``note``).
        chosen_position: the chosen cell's chains' final positions (leaves with a leading chain axis),
            where ``estimate_llc(step_size="auto")`` starts its run; None for kernels without ``position``.
        started_from: ``"w*"``, or ``"warm-up"`` when the cells started from warmed-up chains.
        warmup_step_size, num_warmup, first: with ``step_size="auto"``: the warm-up run's ε and length,
            and the first calibration (cells started at w*) that chose them.
    """

    step_size: float
    chosen: int
    step_sizes: np.ndarray
    llc_mean: np.ndarray
    llc_se: np.ndarray
    llc_mcse: np.ndarray
    draw_std: np.ndarray
    rhat: np.ndarray
    ess: np.ndarray
    drift_z: np.ndarray
    num_diverged: np.ndarray
    acceptance: np.ndarray
    stable: np.ndarray
    equilibrated: np.ndarray
    predicted_bias: np.ndarray
    slope: float
    intercept: float
    hessian_top: float
    curvature_cap: float
    bias_tolerance: float
    nbeta: float
    localization: float
    batch_size: int
    num_chains: int
    num_draws: int
    num_burnin: int
    num_params: int
    sampler: str
    note: str
    per_step_seconds: float
    wall_time: float
    gradients_per_step: int = 1
    by_rule: bool = True
    sampler_stats: dict = dataclasses.field(default_factory=dict, repr=False)
    chosen_position: Any = dataclasses.field(default=None, repr=False)
    started_from: str = "w*"
    warmup_step_size: float = float("nan")
    num_warmup: int = 0
    first: Any = dataclasses.field(default=None, repr=False)

    def table(self) -> str:
        """The grid as a plain-text table; the chosen row is marked with ``*``."""
        lines = [
            f"{'':1}{'step_size':>10} {'llc':>9} {'se':>7} {'rhat':>6} {'ess':>6} {'drift_z':>7} "
            f"{'diverged':>8} {'accept':>6} {'stable':>6} {'equil':>5} {'bias':>7}"
        ]
        for g in range(len(self.step_sizes)):
            lines.append(
                f"{'*' if g == self.chosen else ' '}{self.step_sizes[g]:>10.3g} {self.llc_mean[g]:>9.4g} "
                f"{self.llc_se[g]:>7.2g} {self.rhat[g]:>6.3f} {self.ess[g]:>6.0f} {self.drift_z[g]:>7.1f} "
                f"{self.num_diverged[g]:>8d} {self.acceptance[g]:>6.3f} {self.stable[g]!s:>6} "
                f"{self.equilibrated[g]!s:>5} {self.predicted_bias[g]:>+7.3f}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        head = (
            f"calibration ({self.sampler}, nβ = {self.nbeta:.4g}, γ = {self.localization:.3g}, batch "
            f"{self.batch_size}, {self.num_chains} chains × ({self.num_burnin} + {self.num_draws}) steps per cell, "
            f"{len(self.step_sizes)} cells, {self.wall_time:.1f} s)\n"
            f"h_max = {self.hessian_top:.4g} → grid cap 2/(nβ h_max + γ) = {self.curvature_cap:.3g}; "
            f"chosen step_size = {self.step_size:.3g}\n{self.note}\n"
        )
        if self.started_from != "w*":
            head += (
                f"cells started from chains warmed up for {self.num_warmup} steps at ε = "
                f"{self.warmup_step_size:.3g}, chosen from a first grid started at w*:\n"
            )
        text = head + self.table()
        if self.first is not None:
            text += "\n\nfirst calibration (cells started at w*):\n" + self.first.summary()
        return text

    def __repr__(self) -> str:
        llc = self.llc_mean[self.chosen] if self.chosen >= 0 else float("nan")
        return f"CalibrationResult(step_size={self.step_size:.3g}, llc≈{llc:.4g}, cells={len(self.step_sizes)})"

    def plot(self, *, true_llc: float | None = None):
        """λ̂ (± 2 se) against ε on a log axis, unstable and drifting cells marked, the chosen ε and the
        fitted line; and the acceptance where reported. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        has_acc = bool(np.isfinite(self.acceptance).any())
        fig, axes = plt.subplots(
            1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 3.8), squeeze=False, constrained_layout=True
        )
        ax = axes[0, 0]
        eps = self.step_sizes
        ok = self.stable & self.equilibrated
        ax.errorbar(
            eps[ok], self.llc_mean[ok], 2 * self.llc_se[ok], fmt="o", color="tab:blue", label="stable, equilibrated"
        )
        drifting = self.stable & ~self.equilibrated
        ax.errorbar(
            eps[drifting],
            self.llc_mean[drifting],
            2 * self.llc_se[drifting],
            fmt="s",
            mfc="none",
            color="tab:orange",
            label="drifting / R-hat high",
        )
        bad = ~self.stable & np.isfinite(self.llc_mean)
        ax.plot(eps[bad], self.llc_mean[bad], "x", color="tab:red", label="unstable")
        if np.isfinite(self.slope):
            grid = np.geomspace(eps.min(), self.step_size, 100)  # the chosen cell's line: it and the cells below
            ax.plot(grid, self.intercept + self.slope * grid, color="0.5", lw=1, label="fit a + bε")
        ax.axvline(self.step_size, color="k", ls=":", label=f"chosen ε = {self.step_size:.2g}")
        if true_llc is not None:
            ax.axhline(float(true_llc), color="tab:red", ls="--", lw=1, label=f"true λ = {float(true_llc):.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("step size ε")
        ax.set_ylabel("$\\hat\\lambda$")
        finite = self.llc_mean[np.isfinite(self.llc_mean) & self.stable]
        if finite.size:
            span = finite.max() - min(finite.min(), 0)
            ax.set_ylim(min(finite.min(), 0) - 0.1 * span, finite.max() + 0.3 * span)
        ax.legend(fontsize=7)
        if has_acc:
            ax2 = axes[0, 1]
            ax2.plot(eps, self.acceptance, "o-")
            ax2.axhline(diagnostics.ACCEPTANCE_LOW, color="0.5", ls="--", lw=1)
            ax2.axvline(self.step_size, color="k", ls=":")
            ax2.set_xscale("log")
            ax2.set_xlabel("step size ε")
            ax2.set_ylabel("mean Metropolis acceptance")
        fig.suptitle(f"step-size calibration ({self.sampler})")
        return fig


@dataclasses.dataclass
class CalibrationSweep(Result):
    """Result of :func:`calibrate` with several ``nbeta`` and/or ``localization`` values: one
    :class:`CalibrationResult` per (nβ, γ) pair (every ε × nβ × γ cell ran in the same compiled program).

    Attributes:
        nbetas, localizations: (P,) the pairs, nβ-major (every γ for the first nβ, then the next nβ, ...).
        results: the P calibrations, in the same order; each chose its own step size by the rule. A pair with
            no stable cell is not fatal: its result has ``chosen = -1``, ``step_size`` NaN and a ``note`` saying
            why; :attr:`failed` lists them.
        wall_time: seconds for the whole sweep.

    Example (made by :func:`calibrate`, whose example shows more):
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> sweep = slt.calibrate(p.loss_fn, p.params, p.data, key=jax.random.key(0), num_draws=200,
        ...                       num_step_sizes=4, num_chains=2, nbeta=[50.0, 100.0])
        >>> sweep.nbetas.tolist(), len(sweep.results)
        ([50.0, 100.0], 2)
    """

    nbetas: np.ndarray
    localizations: np.ndarray
    results: list
    wall_time: float

    def __getitem__(self, pair) -> CalibrationResult:
        """``sweep[nbeta, localization]``: the calibration of that pair (values matched to 1e-6 relative)."""
        nbeta, gamma = pair
        for b, g, r in zip(self.nbetas, self.localizations, self.results):
            if np.isclose(b, nbeta, rtol=1e-6) and np.isclose(g, gamma, rtol=1e-6):
                return r
        raise KeyError(f"no calibration for nbeta={nbeta!r}, localization={gamma!r}; have {self.pairs}.")

    @property
    def pairs(self) -> list[tuple[float, float]]:
        return [(float(b), float(g)) for b, g in zip(self.nbetas, self.localizations)]

    @property
    def step_sizes(self) -> np.ndarray:
        """(P,) the step size each pair chose (NaN for a pair with no stable cell)."""
        return np.array([r.step_size for r in self.results])

    @property
    def failed(self) -> dict:
        """``{(nβ, γ): why}`` for the pairs with no stable cell (the sweep goes on without them)."""
        return {pair: r.note for pair, r in zip(self.pairs, self.results) if r.chosen < 0}

    def table(self) -> str:
        """One line per (nβ, γ): chosen ε, λ̂ there (± se), R-hat, and how the choice was made."""
        lines = [f"{'nbeta':>10} {'gamma':>8} {'step_size':>10} {'llc':>9} {'se':>7} {'rhat':>6} {'rule':>5}"]
        for b, g, r in zip(self.nbetas, self.localizations, self.results):
            c = r.chosen
            if c < 0:
                lines.append(f"{b:>10.4g} {g:>8.3g}   no stable cell: see failed")
                continue
            lines.append(
                f"{b:>10.4g} {g:>8.3g} {r.step_size:>10.3g} {r.llc_mean[c]:>9.4g} {r.llc_se[c]:>7.2g} "
                f"{r.rhat[c]:>6.3f} {'yes' if r.by_rule else 'no':>5}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        head = f"calibration sweep over {len(self.results)} (nβ, γ) pairs, {self.wall_time:.1f} s\n"
        return head + self.table() + "".join(f"\n\n{r.summary()}" for r in self.results)

    def plot(self, *, true_llc: float | None = None):
        """λ̂ (± 2 se) against ε, one curve per (nβ, γ), each pair's chosen ε marked. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
        for b, g, r in zip(self.nbetas, self.localizations, self.results):
            ok = r.stable
            line = ax.errorbar(
                r.step_sizes[ok], r.llc_mean[ok], 2 * r.llc_se[ok], fmt="o-", ms=3, label=f"nβ = {b:.4g}, γ = {g:.3g}"
            )
            if r.chosen >= 0:
                ax.plot([r.step_size], [r.llc_mean[r.chosen]], "*", ms=12, color=line[0].get_color())
        if true_llc is not None:
            ax.axhline(float(true_llc), color="tab:red", ls="--", lw=1, label=f"true λ = {float(true_llc):.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("step size ε")
        ax.set_ylabel("$\\hat\\lambda$")
        ax.legend(fontsize=7)
        fig.suptitle("step-size calibration per (nβ, γ) (stars: chosen)")
        return fig


# A cell is unstable when λ̂ exceeds this multiple of d/2 by more than 3 standard errors.
D_HALF_MARGIN = 1.5


def _fit_line(eps, llc, se):
    w = 1.0 / np.maximum(se, 1e-12 + 1e-6 * np.abs(llc)) ** 2
    design = np.stack([np.ones_like(eps), eps], axis=1)
    coef, *_ = np.linalg.lstsq(design * np.sqrt(w)[:, None], llc * np.sqrt(w), rcond=None)
    return float(coef[0]), float(coef[1])


def calibrate(
    model_or_loss,
    *args,
    key,
    step_sizes=None,
    num_step_sizes: int = 12,
    nbeta=None,
    localization=1.0,
    num_chains: int = 4,
    num_draws: int = 2000,
    num_burnin: int | None = None,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    bias_tolerance: float = BIAS_TOLERANCE,
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
) -> CalibrationResult | CalibrationSweep:
    r"""Choose the LLC step size from a grid of step sizes run as **one** vmapped computation.

    Same call forms as :func:`slt.estimate_llc`. Every cell runs ``num_chains`` chains for ``num_burnin +
    num_draws`` steps (``num_burnin`` defaults to ``num_draws``; those are discarded) with the same random numbers, so
    differences between cells are differences of ε, not of noise. The rule is in the module docstring of
    :mod:`slt.calibration`: cap the grid by the curvature at w*, keep the stable and equilibrated cells, fit
    λ̂ linearly in ε, and take the largest ε whose predicted relative bias is at most ``bias_tolerance``.

    A sampler's registered :class:`slt.samplers.SamplerSpec` may declare three capabilities used here:
    ``with_acceptance``, a factory for the same chains that also records the MALA acceptance probability
    of every step (SGLD has one: one extra gradient per step), ``step_gain(params)``, the largest
    effective step per unit ε (RMSprop-SGLD: 1/δ), which divides the curvature cap, and
    ``calibration_check``, the sampler's own regime check (SGNHT).

    Args:
        step_sizes: the grid (any order); default: ``num_step_sizes`` values halving from the curvature
            cap :math:`2/(n\beta h_{\max} + \gamma)`.
        bias_tolerance: largest acceptable predicted relative bias of λ̂ at the chosen ε (default
            :data:`BIAS_TOLERANCE`, 3%; the prediction understates the bias on singular models, see above).
        nbeta, localization: a value each (as in :func:`slt.estimate_llc`), or sequences of values to
            sweep: every (nβ, γ) pair gets its own ε grid (capped by its own :math:`2/(n\beta h_{\max} +
            \gamma)`), all pairs' cells run in the same compiled program, and the rule picks a step per
            pair. Use it to see how λ̂ and the usable step depend on the temperature and the localization.
        Others: as in :func:`slt.estimate_llc`.

    Returns:
        :class:`CalibrationResult`; a :class:`CalibrationSweep` (one result per pair) when ``nbeta`` or
        ``localization`` is a sequence.

    Example:
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> cal = slt.calibrate(p.loss_fn, p.params, p.data, key=jax.random.key(0), num_draws=200,
        ...                     num_step_sizes=4, num_chains=2)
        >>> bool(0 < cal.step_size <= cal.curvature_cap), cal.step_sizes.shape
        (True, (4,))
        >>> sweep = slt.calibrate(p.loss_fn, p.params, p.data, key=jax.random.key(0), num_draws=200,
        ...                       num_step_sizes=4, num_chains=2, localization=[1.0, 100.0])
        >>> [type(r).__name__ for r in sweep.results]
        ['CalibrationResult', 'CalibrationResult']
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    return _calibrate_target(
        target,
        key=key,
        step_sizes=step_sizes,
        num_step_sizes=num_step_sizes,
        nbeta=nbeta,
        localization=localization,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        batch_size=batch_size,
        sampler=sampler,
        sampler_params=sampler_params,
        bias_tolerance=bias_tolerance,
        progress=progress,
        chunk_size=chunk_size,
    )


def _as_values(value, name):
    """A scalar (one value) or a 1-D sequence of values for a swept hyperparameter."""
    if value is None or np.ndim(value) == 0:
        return [value], False
    values = list(np.asarray(value, dtype=np.float64).reshape(-1))
    if not values:
        raise ValueError(f"`{name}` must be a number or a non-empty sequence of numbers; got {value!r}.")
    return values, True


def _calibrate_target(
    target: Target,
    *,
    key,
    step_sizes=None,
    num_step_sizes: int = 12,
    nbeta=None,
    localization=1.0,
    num_chains=4,
    num_draws=2000,
    num_burnin=None,
    batch_size=None,
    sampler="sgld",
    sampler_params=None,
    bias_tolerance=BIAS_TOLERANCE,
    progress=False,
    chunk_size=1024,
    init_position=None,
    max_step_size=None,
    example_losses_at_center=None,
    hessian_top=None,
    with_acceptance=True,
    allow_failure=False,
    soft_bound=False,
    deadline=None,
    steps_per_chunk=None,
):
    start = time.perf_counter()
    nbetas, sweep_nbeta = _as_values(nbeta, "nbeta")
    gammas, sweep_gamma = _as_values(localization, "localization")
    pairs = [
        SamplingSettings.validated(
            num_data=target.num_data,
            step_size=1.0,
            num_chains=num_chains,
            num_draws=num_draws,
            num_burnin=0 if num_burnin is None else num_burnin,
            batch_size=batch_size,
            nbeta=b,
            localization=g,
            sampler=sampler,
            sampler_params=sampler_params,
            chunk_size=chunk_size,
            num_params=target.num_parameters,
        )
        for b in nbetas
        for g in gammas
    ]
    settings = pairs[0]
    num_draws, num_burnin = settings.num_draws, (settings.num_draws if num_burnin is None else settings.num_burnin)
    if num_draws < 12:
        raise ValueError(f"calibration needs at least 12 kept steps per cell: `num_draws` >= 12; got {num_draws}.")
    num_steps = num_burnin + num_draws
    bias_tolerance = validate.positive_float(bias_tolerance, "bias_tolerance")
    per_example = example_losses_at_center  # a caller that already checked L_n(w*) passes them: one data pass
    if per_example is None:
        per_example = check_loss_at_center(target, settings.chunk_size)
    hess_key, run_key = jax.random.split(key)
    h_max = top_hessian_eigenvalue(target, key=hess_key) if hessian_top is None else float(hessian_top)
    spec = sampler_spec(settings.sampler)
    factory = spec.factory
    # largest effective step per unit ε (preconditioners)
    gain = float(spec.step_gain(dict(settings.sampler_params))) if spec.step_gain is not None else 1.0
    if step_sizes is not None:
        fixed = np.sort(np.asarray(step_sizes, dtype=np.float64).reshape(-1))[::-1]
        if fixed.size < 3 or not np.all(np.isfinite(fixed) & (fixed > 0)):
            raise ValueError(f"`step_sizes` must hold at least 3 positive finite numbers; got {step_sizes!r}.")
    else:
        num_step_sizes = validate.int_at_least(num_step_sizes, "num_step_sizes", 3)
    caps, grids = [], []
    for pair in pairs:
        t, gamma = pair.nbeta, pair.localization
        cap = (2.0 / (t * h_max + gamma) if (h_max > 0 or gamma > 0) else 1.0) / gain
        caps.append(cap)
        grids.append(fixed if step_sizes is not None else cap * 0.5 ** np.arange(num_step_sizes))
    cells = np.concatenate(grids)
    cell_nbeta = np.concatenate([np.full(g.size, p.nbeta) for g, p in zip(grids, pairs)])
    cell_gamma = np.concatenate([np.full(g.size, p.localization) for g, p in zip(grids, pairs)])

    run_sampler = (spec.with_acceptance if with_acceptance else None) or factory  # same chains, acceptance recorded
    t0 = time.perf_counter()
    trace = run_grid(
        target,
        keys=jnp.stack([run_key] * cells.size),
        example_losses_at_center=per_example,
        nbeta=cell_nbeta if len(pairs) > 1 else settings.nbeta,
        localization=cell_gamma if len(pairs) > 1 else settings.localization,
        num_chains=settings.num_chains,
        num_steps=num_steps,
        batch_size=settings.batch_size,
        sampler=run_sampler,
        sampler_params={"step_size": cells, **dict(settings.sampler_params)},
        progress=progress,
        description="calibration",
        init_position=init_position,
        deadline=deadline,
        steps_per_chunk=steps_per_chunk,
    )
    stopped = ""
    if trace.loss.shape[-1] < num_steps:  # the deadline stopped the grid: the same split of what ran
        done = trace.loss.shape[-1]
        stopped = f"time_budget stopped the grid after {done} of {num_steps} steps per cell. "
        num_burnin, num_steps = round(num_burnin * done / num_steps), done
    per_step = (time.perf_counter() - t0) / (num_steps * cells.size)
    loss = np.asarray(trace.loss, np.float64)
    loss_at_center = np.asarray(trace.loss_at_center, np.float64)
    info = {k: np.asarray(v) for k, v in trace.info.items()}
    final_position = getattr(trace.final_state, "position", None)  # user kernels may name it otherwise
    results, offset = [], 0
    for pair, eps, cap in zip(pairs, grids, caps):
        rows = slice(offset, offset + eps.size)
        offset += eps.size
        results.append(
            _choose(
                eps,
                pair,
                loss[rows],
                loss_at_center[rows],
                {k: v[rows] for k, v in info.items()},
                None if final_position is None else jax.tree_util.tree_map(lambda x, r=rows: x[r], final_position),
                num_steps=num_steps,
                num_burnin=int(num_burnin),
                num_params=target.num_parameters,
                bias_tolerance=bias_tolerance,
                max_step_size=max_step_size,
                soft_bound=soft_bound,
                h_max=h_max,
                cap=cap,
                gradients_per_step=2 if run_sampler is not factory else 1,
                per_step=per_step,
                started_from="w*" if init_position is None else "warm-up",
                regime_check=spec.calibration_check,
            )
        )
    wall_time = time.perf_counter() - start
    for result in results:
        result.wall_time = wall_time
        result.note = stopped + result.note
    if not (sweep_nbeta or sweep_gamma):
        if results[0].chosen < 0 and not allow_failure:
            raise ValueError("calibration found no stable step size: " + results[0].note)
        return results[0]
    return CalibrationSweep(
        nbetas=np.array([p.nbeta for p in pairs]),
        localizations=np.array([p.localization for p in pairs]),
        results=results,
        wall_time=wall_time,
    )


def _choose(
    eps,
    settings,
    loss,
    loss_at_center,
    info,
    final_position,
    *,
    num_steps,
    num_burnin,
    num_params,
    bias_tolerance,
    max_step_size,
    h_max,
    cap,
    gradients_per_step,
    per_step,
    started_from,
    regime_check=None,
    soft_bound=False,
) -> CalibrationResult:
    """The rule of the module docstring on one (nβ, γ) pair's cells (arrays with a leading cell axis)."""
    G = eps.size
    llc = settings.nbeta * (loss - loss_at_center)
    kept = llc[:, :, num_burnin:]
    diverged = ~np.isfinite(llc).all(axis=2)  # (G, C)
    acc_trace = info.get("acceptance_rate")
    info_means = {
        k: np.array([np.mean(v[g][~diverged[g]][:, num_burnin:]) if (~diverged[g]).any() else np.nan for g in range(G)])
        for k, v in info.items()
    }
    stats = {k: np.full(G, np.nan) for k in ("mean", "se", "mcse", "rhat", "ess", "drift", "acc", "sd")}
    for g in range(G):
        good = kept[g][~diverged[g]]
        if acc_trace is not None:
            stats["acc"][g] = (
                float(np.mean(np.asarray(acc_trace)[g][~diverged[g]][:, num_burnin:])) if good.size else np.nan
            )
        if good.shape[0] == 0:
            continue
        chain_means = good.mean(axis=1)
        stats["mean"][g] = chain_means.mean()
        stats["sd"][g] = good.std()
        stats["se"][g] = diagnostics.se_of_means(chain_means)
        stats["mcse"][g] = diagnostics.mcse(good)
        stats["rhat"][g] = diagnostics.rhat(good) if len(chain_means) > 1 else np.nan
        stats["ess"][g] = diagnostics.ess(good)
        stats["drift"][g] = diagnostics.drift_z(good)
    se = np.where(np.isfinite(stats["se"]), stats["se"], stats["mcse"])
    d_half = num_params / 2
    num_diverged = diverged.sum(axis=1)
    # Stability is monotone in ε: a cell is unstable where chains diverged at any step up to twice its own. At most
    # 2x below a diverging cell it is marginal: a run 10-100x longer than the cell meets the excursions that
    # diverged there (the peer's crossing x·w1·w2² at γ = 1: no chain of 4 diverged in 1,000 steps at ε = 0.0088,
    # 3 of 4 at 2ε, and a 24,000-step run at ε lost all four).
    diverged_at_or_below = np.array([np.any((num_diverged > 0) & (eps <= 2 * e * (1 + 1e-9))) for e in eps])
    stable = (
        ~diverged_at_or_below
        & np.isfinite(stats["mean"])
        & (stats["mean"] - 3 * np.nan_to_num(se) <= D_HALF_MARGIN * d_half)
        & ~(stats["acc"] < 0.5)
    )
    in_regime = np.ones(G, bool)
    if regime_check is not None:  # the sampler's own validity test on its per-cell statistics (e.g. SGNHT's heat)
        in_regime = np.asarray(regime_check(info_means, dict(settings.sampler_params)), bool)
        stable &= in_regime
    equilibrated = stable & (np.abs(np.nan_to_num(stats["drift"])) <= diagnostics.DRIFT_Z) & ~(stats["rhat"] >= 1.1)

    ok = np.flatnonzero(equilibrated)
    slope = intercept = float("nan")
    predicted = np.full(G, np.nan)
    fit_cells = ok
    if ok.size >= 2:
        intercept, slope = _fit_line(eps[ok], stats["mean"][ok], se[ok])
        if intercept > 0:
            predicted = np.maximum(slope, 0.0) * eps / intercept
    # A soft bound (an earlier grid's fit that is itself in doubt) caps only a grid with no bias information of its
    # own (keep_bound below); a grid whose fit is informative (>= 2 equilibrated cells, positive slope) decides.
    capped = max_step_size is not None and not (soft_bound and ok.size >= 2 and slope > 0)
    allowed = ok[eps[ok] <= max_step_size * (1 + 1e-9)] if capped else ok
    candidates = allowed[predicted[allowed] <= bias_tolerance]
    under_bound = np.flatnonzero(stable & (eps <= (max_step_size or 0.0) * (1 + 1e-9)))
    # Under a bound an earlier calibration set by its bias rule (the warm grid of step_size="auto"), a grid that
    # carries no bias information keeps the bound: too few equilibrated cells to fit, or a fitted slope that is not
    # positive (SGLD's first-order bias grows with ε; a flat or falling λ̂(ε) here means the small cells, started
    # from the warm chains, have not relaxed). The smallest cell mixes worst: a tracker's warm grid whose cells at
    # and below the bound read R-hat 1.11-1.13 fell to ε 8x below it, and most records then failed their checks.
    keep_bound = max_step_size is not None and under_bound.size and (ok.size < 2 or not slope > 0)
    if keep_bound:
        chosen = int(under_bound[np.argmax(eps[under_bound])])
        note = (
            f"the grid carries no bias information ({ok.size} of {G} cells equilibrated"
            + (f", fitted slope b = {slope:.4g} ≤ 0" if ok.size >= 2 else "")
            + f"): kept the first calibration's bound, the largest stable ε at or below {max_step_size:.3g}."
        )
    elif candidates.size:
        chosen = int(candidates[np.argmax(eps[candidates])])
        note = (
            f"chose the largest stable, equilibrated ε whose predicted bias b·ε/a = {predicted[chosen]:+.3f} is within "
            f"{bias_tolerance:g} (fit over {fit_cells.size} cells: a = {intercept:.4g}, b = {slope:.4g})"
            + (f", at most the first calibration's {max_step_size:.3g}." if capped else ".")
        )
    elif ok.size:
        chosen = int(ok[np.argmin(eps[ok])])
        note = (
            "no equilibrated cell has a predicted bias within the tolerance (or too few cells to fit): chose the "
            "smallest equilibrated ε. Consider a larger batch_size (minibatch noise inflates λ̂ by about "
            "nβ/batch_size times the discretization bias) or more calibration steps."
        )
    elif stable.any():
        # No fit to read the bias from: bound it by the stiffest direction's first-order bias (2/cap = g(nβh + γ),
        # slt._src.curvature.predicted_step_bias), a worst case. The smallest stable ε mixes worst of all (on the
        # TMS at γ = 1 it gave ε = 1.7e-6, ESS 9 in 600,000 chain-steps); take the largest stable ε within it.
        stiff = settings.nbeta * h_max + settings.localization
        unit = predicted_step_bias(
            1.0,
            nbeta=settings.nbeta,
            localization=settings.localization,
            hessian_top=h_max,
            batch_size=settings.batch_size,
            num_data=settings.num_data,
            gain=2.0 / (cap * stiff) if stiff > 0 else 1.0,  # the sampler's step gain, as the cap used it
        )
        curvature_bias = eps * unit
        cells = np.flatnonzero(stable)
        safe = cells[(curvature_bias[cells] <= bias_tolerance) & (eps[cells] <= (max_step_size or np.inf) * (1 + 1e-9))]
        chosen = int(safe[np.argmax(eps[safe])]) if safe.size else int(cells[np.argmin(eps[cells])])
        which = (
            f"the largest stable ε whose worst-case (stiffest-direction) bias ε·g(nβh + γ)/4 = "
            f"{curvature_bias[chosen]:.3f} is within {bias_tolerance:g}"
            if safe.size
            else "the smallest stable ε"
        )
        note = (
            f"no cell equilibrated within the calibration run (λ̂ traces still drifting): chose {which}. Increase "
            "num_draws and num_burnin, or localization (flat directions relax in about 2/(εγ) steps)."
        )
    else:
        chosen = -1
        over = int(np.sum((num_diverged == 0) & (stats["mean"] - 3 * np.nan_to_num(se) > D_HALF_MARGIN * d_half)))
        note = (
            f"no stable step size (nβ = {settings.nbeta:.4g}, γ = {settings.localization:.4g}): of {G} cells, "
            f"{int(np.sum(num_diverged > 0))} had diverging chains, {over} read λ̂ above 1.5·d/2 (chains leaving w*)"
            + (f", {int(np.sum(~in_regime))} failed the sampler's regime check" if regime_check is not None else "")
            + f". Pass smaller `step_sizes` (the grid was {eps.min():.3g} to {eps.max():.3g}), a larger "
            "localization, or check the model and data (is w* a minimum?)."
        )
    if final_position is not None:
        final_position = None if chosen < 0 else jax.tree_util.tree_map(lambda x: x[chosen], final_position)
    return CalibrationResult(
        step_size=float(eps[chosen]) if chosen >= 0 else float("nan"),
        chosen=chosen,
        step_sizes=eps,
        llc_mean=stats["mean"],
        llc_se=se,
        llc_mcse=stats["mcse"],
        draw_std=stats["sd"],
        rhat=stats["rhat"],
        ess=stats["ess"],
        drift_z=stats["drift"],
        num_diverged=num_diverged,
        acceptance=stats["acc"],
        stable=stable,
        equilibrated=equilibrated,
        predicted_bias=predicted,
        slope=slope,
        intercept=intercept,
        hessian_top=h_max,
        curvature_cap=cap,
        bias_tolerance=bias_tolerance,
        nbeta=settings.nbeta,
        localization=settings.localization,
        batch_size=settings.batch_size,
        num_chains=settings.num_chains,
        num_draws=num_steps - num_burnin,
        num_burnin=int(num_burnin),
        num_params=num_params,
        sampler=settings.sampler_name,
        gradients_per_step=gradients_per_step,
        note=note,
        per_step_seconds=per_step,
        wall_time=float("nan"),  # set by the caller: the whole calibration's time
        by_rule=bool(candidates.size) and not keep_bound,
        sampler_stats=info_means,
        chosen_position=final_position,
        started_from=started_from,
    )
