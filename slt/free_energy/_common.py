r"""What the temperature estimators share: a validated problem at w*, one jitted run of every temperature ×
chain, and the Monte-Carlo error of linear combinations of the per-temperature traces.

Notation (Watanabe, JMLR 14, 2013): n data points, :math:`L_n` the mean negative log-likelihood, w* the centre,
:math:`t = n\beta` the inverse temperature on the likelihood, γ = ``localization``. Per draw the excess loss
:math:`L_B(w) - L_B(w^*)` is the paired minibatch difference; an estimate that is a linear combination
:math:`\sum_k a_k e(t_k)` has as its error the MCSE (:func:`slt.diagnostics.mcse`) of the per-draw combination,
which accounts for the autocorrelation within chains, the spread between chains and the correlation between
temperatures (common random numbers).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt import diagnostics
from slt._src import validate
from slt._src.auto import prepare_run
from slt._src.driver import run_chains, run_grid
from slt._src.settings import SamplingSettings
from slt.calibration import BIAS_TOLERANCE
from slt.llc import SamplingWarning
from slt.targets import Target


def _auto_seconds(problem) -> float:
    """Seconds spent by ``step_size="auto"`` before the estimator's own run (calibrations and warm-up)."""
    return 0.0 if problem.auto is None else problem.auto.calibration_seconds + problem.auto.warmup_seconds


def _take(data, idx):
    return jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data)


def _check_localization(localization, *, strict: bool) -> float:
    try:
        value = float(localization)
    except (TypeError, ValueError):
        raise ValueError(f"`localization` (γ) must be a number; got {localization!r}.") from None
    if strict and not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"`localization` (γ) must be > 0: the free energy uses the normalized prior N(w*, γ⁻¹I), which "
            f"does not exist for γ = {value!r}."
        )
    return validate.localization(localization)


def _check_num_temperatures(num_temperatures, minimum: int = 2) -> int:
    if isinstance(num_temperatures, bool) or not isinstance(num_temperatures, (int, np.integer)):
        raise ValueError(f"`num_temperatures` must be an integer >= {minimum}; got {num_temperatures!r}.")
    if num_temperatures < minimum:
        raise ValueError(f"`num_temperatures` must be >= {minimum}; got {num_temperatures}.")
    return int(num_temperatures)


def _check_step_sizes(step_size, num_temperatures: int) -> tuple[float, np.ndarray | None]:
    """A scalar step (to be scheduled) or an explicit array of one step per temperature."""
    try:
        arr = None if isinstance(step_size, str) else np.asarray(step_size, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1:
        raise ValueError(f"`step_size` must be a positive number or an array of {num_temperatures}; got {step_size!r}.")
    if arr.ndim == 1:
        if arr.shape != (num_temperatures,):
            raise ValueError(
                f"`step_size` as an array needs one step per temperature ({num_temperatures}); got shape {arr.shape}."
            )
        if not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError(f"`step_size` entries must be positive finite numbers; got {arr}.")
        return float(arr.max()), arr
    return float(arr), None


@dataclasses.dataclass(frozen=True)
class _Problem:
    target: Target
    settings: SamplingSettings
    per_example: np.ndarray
    auto: Any = None  # the AutoChoice of step_size="auto" (its chains' positions start every temperature)

    @property
    def init_position(self):
        return None if self.auto is None else self.auto.init_position

    @property
    def init_loss(self) -> float:
        return float(np.mean(self.per_example, dtype=np.float64))

    @property
    def num_data(self) -> int:
        return self.target.num_data


def _problem(
    target: Target,
    *,
    step_size,
    localization: float,
    num_chains,
    num_draws,
    num_burnin,
    batch_size,
    sampler,
    sampler_params,
    chunk_size,
    auto_nbeta=None,
    key=None,
    precision=0.02,
    bias_tolerance=BIAS_TOLERANCE,
    time_budget=120.0,
    progress=False,
) -> tuple[_Problem, Any]:
    """The validated problem, and the key left for sampling. ``step_size="auto"`` runs
    :func:`slt._src.auto.auto_settings` at the temperature ``auto_nbeta`` (the stiffest one the estimator
    samples), which also sizes ``num_burnin``/``num_draws`` where they are None, and the chains start where
    its chosen calibration cell ended."""
    if isinstance(step_size, str) and step_size != "auto":
        raise ValueError(f"`step_size` must be a positive number, an array of them, or 'auto'; got {step_size!r}.")
    p = prepare_run(
        target,
        key,
        step_size=step_size,
        localization=localization,
        nbeta=auto_nbeta,  # the temperature "auto" chooses at; the estimators sample their own grid of them
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
        steps_per_chunk=None,
    )
    return _Problem(target, p.settings, p.per_example, p.choice), p.key


@dataclasses.dataclass
class _Run:
    excess: np.ndarray  # (K, C, D) float64, L_B(w) - L_B(w*) of the kept draws
    healthy: np.ndarray  # (C,) chain index finite at every temperature
    diverged: np.ndarray  # (K, C)
    rhat: np.ndarray  # (K,)
    wall_time: float
    messages: list[str]

    def combined(self, coefficients) -> np.ndarray:
        """Per-draw ``sum_k coefficients[k] * excess[k]`` over the healthy chains, shape (C_h, D)."""
        coefficients = np.asarray(coefficients, dtype=np.float64)
        return np.tensordot(coefficients, self.excess[:, self.healthy], axes=1)

    def mean_and_se(self, coefficients) -> tuple[float, float]:
        z = self.combined(coefficients)
        if z.size == 0:
            return float("nan"), float("nan")
        return float(z.mean()), _mcse(z)

    def per_temperature(self) -> tuple[np.ndarray, np.ndarray]:
        k = self.excess.shape[0]
        stats = [self.mean_and_se(np.eye(k)[i]) for i in range(k)]
        return np.array([s[0] for s in stats]), np.array([s[1] for s in stats])


def _mcse(z: np.ndarray) -> float:
    """MCSE of the mean of a (chain, draw) array; falls back to the spread of chain means if ArviZ cannot."""
    se = diagnostics.mcse(z)
    if not np.isfinite(se):
        means = z.mean(axis=1)
        se = float(means.std(ddof=1) / math.sqrt(means.size)) if means.size > 1 else float("nan")
    return float(se)


def _sample(problem: _Problem, nbetas, step_sizes, keys, *, progress: bool, description: str) -> _Run:
    """All temperatures × chains in one compiled program: :func:`slt._src.driver.run_grid`, or
    :func:`slt._src.driver.run_chains` for a single temperature (the same chains; it compiles about 3× faster)."""
    s = problem.settings
    common = dict(
        example_losses_at_center=problem.per_example,
        localization=s.localization,
        num_chains=s.num_chains,
        num_steps=s.num_burnin + s.num_draws,
        batch_size=s.batch_size,
        sampler=s.sampler,
        progress=progress,
        description=description,
        init_position=problem.init_position,
        steps_per_chunk=None if problem.auto is None else problem.auto.steps_per_chunk,
    )
    start = time.perf_counter()
    if len(nbetas) == 1:
        params = {**dict(s.sampler_params), "step_size": float(step_sizes[0])}
        one = run_chains(problem.target, key=keys[0], nbeta=float(nbetas[0]), sampler_params=params, **common)
        trace = jax.tree_util.tree_map(lambda x: x[None], (one.loss, one.loss_at_center, one.divergence_step))
    else:
        params = {**dict(s.sampler_params), "step_size": np.asarray(step_sizes, dtype=np.float32)}
        grid = run_grid(
            problem.target, keys=keys, nbeta=np.asarray(nbetas, dtype=np.float32), sampler_params=params, **common
        )
        trace = (grid.loss, grid.loss_at_center, grid.divergence_step)
    wall = time.perf_counter() - start
    losses = np.asarray(trace[0], dtype=np.float64)
    centre = np.asarray(trace[1], dtype=np.float64)
    diverged = np.asarray(trace[2]) >= 0  # (K, C): the driver's first non-finite step
    healthy = ~diverged.any(axis=0)
    excess = (losses - centre)[:, :, s.num_burnin :]
    messages: list[str] = []
    if diverged.any():
        temps = np.flatnonzero(diverged.any(axis=1))
        messages.append(
            f"{int(diverged.sum())} chain(s) diverged (loss became non-finite) at nβ = "
            f"{', '.join(f'{nbetas[k]:.4g}' for k in temps)}; those chain indices are left out at every "
            "temperature. Lower step_size (or raise localization)."
        )
        warnings.warn(messages[-1], SamplingWarning, stacklevel=3)
    if not healthy.any():
        messages.append("every chain index diverged somewhere: there is no estimate.")
    rhat = np.array([diagnostics.rhat(excess[k][healthy]) if healthy.sum() > 1 else np.nan for k in range(len(nbetas))])
    bad = np.flatnonzero(rhat > 1.05)
    if bad.size:
        messages.append(
            f"R-hat > 1.05 at nβ = {', '.join(f'{nbetas[k]:.4g}' for k in bad)}: chains disagree there; run more "
            "burn-in/draws."
        )
    return _Run(excess, healthy, diverged, rhat, wall, messages)


def _same_key(key, count: int):
    return jax.vmap(lambda _: key)(jnp.arange(count))
