"""LLC over training: one estimate per checkpoint, checkpoints as one more vmapped batch axis.

Stage boundaries of development are critical points of the curve t ↦ λ̂(w_t) (Hoogland et al., arXiv
2402.02364). :func:`llc_trajectory` estimates that curve. Every checkpoint is sampled with the same
settings; the checkpoints of a chunk run in one jitted computation (``vmap`` over checkpoints around the
usual ``scan``-over-steps, ``vmap``-over-chains driver), and all chunks have the same size (the last one is
padded), so the whole trajectory compiles once.

Checkpoint ``i`` uses the key ``jax.random.fold_in(key, i)``: its result is the same (up to float
rounding of the batched computation) as ``estimate_llc(..., key=jax.random.fold_in(key, i))``.

Beside the LLC, each record carries the weight norm ‖w_t‖₂, in total and per parameter group
(:func:`weight_norms`), and the effective step ‖Δw‖/‖w‖ between records: there is no general relation between
norm and LLC (grokking networks reportedly end with a large norm and a small LLC), and the norm sets the effective
learning rate of Adam (SCIENCE.md §5, §7). :meth:`LLCTrajectory.plot_norm` draws both against the step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt._src import validate
from slt._src.auto import EXTENSION_KEY, EXTENSIONS, auto_settings, plan_extension
from slt._src.driver import ChainTrace, continue_trace, run_chains
from slt._src.progress import Progress
from slt._src.results import Result
from slt._src.settings import SamplingSettings
from slt._src.validate import as_key
from slt.calibration import BIAS_TOLERANCE
from slt.llc import LLCResult, summarize_run
from slt.targets import check_loss_at_center, make_target

__all__ = ["LLCTrajectory", "llc_trajectory", "load_checkpoints", "weight_norms"]


@dataclasses.dataclass
class LLCTrajectory(Result):
    """LLC estimates along a training run.

    Attributes:
        steps: (K,) training step of each checkpoint.
        llc_mean, llc_std, llc_mcse: (K,) per checkpoint (see :class:`slt.LLCResult`).
        init_loss: (K,) full-data loss L_n(w_t) at each checkpoint.
        results: the K :class:`slt.LLCResult` objects.
        weight_norm: (K,) ‖w_t‖₂ over all parameters of each checkpoint (host, float64; for NNX the
            ``nnx.Param`` variables; with ``where=`` still all of them, frozen or not).
        group_norms: group name → (K,) ‖w_t‖₂ of that group (:func:`weight_norms`: per submodule for NNX, per
            top-level entry of a pytree).
        effective_step: (K,) ‖w_t − w_prev‖ / (‖w_t‖ · (s_t − s_prev)): the net relative displacement per
            optimizer step since the previous record (NaN at the first record and where the steps do not
            increase). It equals the per-step ‖Δw‖/‖w‖ when the steps between records point the same way, and is
            smaller when they fluctuate (‖Σ u‖ ≤ Σ ‖u‖). :class:`slt.callbacks.LLCTracker` records the exact
            one-step ratio ‖u_t‖/‖w_t‖ at records where the optimizer's update is passed.
        group_effective_step: group name → (K,), the same per group.
        step_from_update: (K,) whether ``effective_step`` came from a passed update (one step) rather than
            from consecutive records.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> checkpoints = [p.params + 1.0, p.params + 0.1, p.params]  # approaching the minimum w*
        >>> traj = slt.dynamics.llc_trajectory(p.loss_fn, checkpoints, p.data, key=jax.random.key(0), step_size=5e-3,
        ...                                    steps=[0, 100, 200], num_chains=2, num_draws=1000, num_burnin=100)
        >>> len(traj), traj.steps.tolist(), traj.llc_mean.shape, traj.results[2].llc_trace.shape
        (3, [0, 100, 200], (3,), (2, 1000))
        >>> bool(np.all(np.diff(traj.init_loss) < 0))  # the training loss L_n(w_t) falls
        True
    """

    steps: np.ndarray
    llc_mean: np.ndarray
    llc_std: np.ndarray
    llc_mcse: np.ndarray
    init_loss: np.ndarray
    results: list[LLCResult]
    auto: Any = dataclasses.field(default=None, repr=False)
    reference_step: int | None = None
    weight_norm: np.ndarray | None = None
    group_norms: dict = dataclasses.field(default_factory=dict)
    effective_step: np.ndarray | None = None
    group_effective_step: dict = dataclasses.field(default_factory=dict)
    step_from_update: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.results)

    @property
    def rhat(self) -> np.ndarray:
        """(K,) R-hat of each record's λ̂ trace."""
        return np.array([r.rhat for r in self.results])

    @property
    def ess(self) -> np.ndarray:
        """(K,) bulk ESS of each record's λ̂ trace."""
        return np.array([r.ess for r in self.results])

    @property
    def record_warnings(self) -> list[list[str]]:
        """Each record's health-check findings (:attr:`slt.LLCResult.warnings`)."""
        return [r.warnings for r in self.results]

    @property
    def failing(self) -> np.ndarray:
        """(K,) whether a record fails a health check (diverged chains, R-hat, ESS, drift, λ̂ < 0 or > d/2...)."""
        return np.array([bool(w) for w in self.record_warnings], dtype=bool)

    def health(self) -> str:
        """One line per failing record (step: its findings), or a line saying every record passed."""
        bad = np.flatnonzero(self.failing)
        if not bad.size:
            return f"all {len(self)} records pass the health checks."
        lines = [f"{bad.size} of {len(self)} records fail a health check:"]
        lines += [f"  step {self.steps[k]}: " + " | ".join(self.results[k].warnings) for k in bad]
        return "\n".join(lines)

    def summary(self) -> str:
        head = f"LLC trajectory: {len(self)} records, steps {self.steps[0]}..{self.steps[-1]}"
        if self.auto is not None:
            head += f"\n{self.auto.describe()}, chosen once at step {self.reference_step}"
        norms = self.weight_norm is not None and len(self.weight_norm) == len(self)
        rows = [
            f"{'step':>8} {'llc':>9} {'mcse':>7} {'rhat':>6} {'ess':>6} {'loss':>10}"
            + (f" {'|w|':>9} {'|dw|/|w|':>9}" if norms else "")
            + " ok"
        ]
        for k in range(len(self)):
            rows.append(
                f"{self.steps[k]:>8} {self.llc_mean[k]:>9.4g} {self.llc_mcse[k]:>7.2g} {self.rhat[k]:>6.3f} "
                f"{self.ess[k]:>6.0f} {self.init_loss[k]:>10.4g}"
                + (f" {self.weight_norm[k]:>9.4g} {self.effective_step[k]:>9.3g}" if norms else "")
                + f" {'no' if self.failing[k] else 'yes'}"
            )
        if norms and len(self.group_norms) > 1:
            rows.append(
                "weight norm by group, first -> last record: "
                + ", ".join(f"{g} {v[0]:.4g} -> {v[-1]:.4g}" for g, v in self.group_norms.items())
            )
        return head + "\n" + "\n".join(rows) + "\n" + self.health()

    def plot(self, *, boundaries: Sequence[float] | None = None, title: str | None = None):
        """λ̂ ± std against the training step, with the training loss on a second axis."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
        ax.errorbar(
            self.steps,
            self.llc_mean,
            yerr=self.llc_std,
            color="tab:blue",
            marker="o",
            ms=3,
            lw=1.2,
            capsize=2,
            label="LLC $\\hat\\lambda$",
        )
        bad = self.failing
        if bad.any():
            ax.plot(
                self.steps[bad], self.llc_mean[bad], "x", color="tab:red", ms=8, mew=2, label="fails a health check"
            )
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xlabel("training step")
        ax.set_ylabel("LLC $\\hat\\lambda$", color="tab:blue")
        twin = ax.twinx()
        twin.plot(self.steps, self.init_loss, color="tab:gray", lw=1, label="training loss $L_n$")
        twin.set_ylabel("loss $L_n(w_t)$", color="tab:gray")
        for b in boundaries or ():
            ax.axvline(b, color="tab:red", ls="--", lw=1)
        ax.set_title(title or "LLC over training")
        return fig

    def plot_norm(self, *, groups: bool = False, effective_step: bool = False, title: str | None = None):
        """λ̂ ± std and the weight norm ‖w_t‖₂ against the training step, on twin axes; ``groups=True`` adds each
        group's norm (dashed), ``effective_step=True`` a panel below with ‖Δw‖/‖w‖ per step (log scale)."""
        from slt.plotting import _pyplot

        if self.weight_norm is None:
            raise ValueError("this trajectory has no weight norms (saved by an older slt?): nothing to plot.")
        plt = _pyplot()
        if effective_step:
            fig, (ax, low) = plt.subplots(
                2, 1, figsize=(7, 5.6), sharex=True, constrained_layout=True, height_ratios=(2, 1)
            )
        else:
            fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
        ax.errorbar(self.steps, self.llc_mean, yerr=self.llc_std, color="tab:blue", marker="o", ms=3, lw=1.2, capsize=2)
        ax.set_ylabel("LLC $\\hat\\lambda$", color="tab:blue")
        twin = ax.twinx()
        twin.plot(self.steps, self.weight_norm, color="tab:orange", lw=1.5, label="$\\|w\\|_2$")
        if groups:
            for name, norm in self.group_norms.items():
                twin.plot(self.steps, norm, ls="--", lw=1, label=name)
            twin.legend(fontsize=7, loc="best")
        twin.set_ylabel("weight norm $\\|w_t\\|_2$", color="tab:orange")
        ax.set_title(title or "LLC and weight norm over training")
        if effective_step:
            low.semilogy(self.steps, self.effective_step, color="tab:orange", marker=".", lw=1, label="total")
            if groups:
                for name, ratio in self.group_effective_step.items():
                    low.semilogy(self.steps, ratio, ls="--", lw=1, label=name)
                low.legend(fontsize=7, loc="best")
            low.set_ylabel("$\\|\\Delta w\\| / \\|w\\|$ per step")
            low.set_xlabel("training step")
        else:
            ax.set_xlabel("training step")
        return fig


def load_checkpoints(directory: str | os.PathLike) -> tuple[list[Any], list[int]]:
    """Read every step of an orbax ``CheckpointManager`` directory (saved with ``StandardSave``).

    Returns ``(checkpoints, steps)`` in increasing step order.

    Example:
        >>> import tempfile, jax.numpy as jnp, orbax.checkpoint as ocp
        >>> from slt.dynamics import load_checkpoints
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with ocp.CheckpointManager(tmp) as manager:  # what a training loop writes
        ...         for step in (0, 10, 20):
        ...             _ = manager.save(step, args=ocp.args.StandardSave({"w": jnp.full(2, float(step))}))
        ...         manager.wait_until_finished()
        ...     checkpoints, steps = load_checkpoints(tmp)
        >>> steps, checkpoints[1]["w"].tolist()
        ([0, 10, 20], [10.0, 10.0])
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        raise ValueError(f"`checkpoints` directory {path!r} does not exist.")
    with ocp.CheckpointManager(path) as manager:
        steps = sorted(manager.all_steps())
        if not steps:
            raise ValueError(f"`checkpoints` directory {path!r} holds no orbax checkpoint steps.")
        restored = [manager.restore(step, args=ocp.args.StandardRestore()) for step in steps]
    return restored, [int(s) for s in steps]


def _as_list(checkpoints, stacked: bool) -> tuple[list[Any], list[int] | None]:
    if isinstance(checkpoints, (str, os.PathLike)):
        return load_checkpoints(checkpoints)
    if isinstance(checkpoints, (list, tuple)) and not stacked:
        if len(checkpoints) == 0:
            raise ValueError("`checkpoints` is empty: expected at least one checkpoint.")
        return list(checkpoints), None
    # a pytree with a leading checkpoint axis
    leaves = jax.tree_util.tree_leaves(checkpoints)
    if not leaves or any(np.ndim(x) == 0 for x in leaves):
        raise ValueError(
            "`checkpoints` must be a sequence of parameter pytrees, a pytree whose leaves have a leading "
            "checkpoint axis, or an orbax checkpoint directory."
        )
    sizes = {np.shape(x)[0] for x in leaves}
    if len(sizes) != 1:
        raise ValueError(f"`checkpoints` leaves have different leading (checkpoint) sizes {sorted(sizes)}.")
    k = sizes.pop()
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], checkpoints) for i in range(k)], None


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def llc_trajectory(
    model_or_loss,
    checkpoints,
    data,
    *,
    key,
    step_size,
    steps: Sequence[int] | None = None,
    loss=None,
    where=None,
    checkpoint_batch_size: int = 8,
    stacked: bool = False,
    progress: bool = False,
    reference: int = -1,
    recalibrate: bool = False,
    precision: float = 0.02,
    bias_tolerance: float = BIAS_TOLERANCE,
    time_budget: float = 120.0,
    norm_groups: Callable | None = None,
    **settings,
) -> LLCTrajectory:
    """One LLC estimate per checkpoint, compiled once, with the weight norm of each checkpoint beside it.

    Args:
        model_or_loss: ``loss_fn(params, batch)``, or an ``nnx.Module`` (its structure; each checkpoint is
            then an ``nnx.State`` of it or a module instance) with ``loss=``.
        checkpoints: a sequence of parameter pytrees (or NNX states/modules), a pytree with a leading
            checkpoint axis, or the path of an orbax ``CheckpointManager`` directory.
        data: as for :func:`slt.estimate_llc`.
        key: a ``jax.random.key``; checkpoint ``i`` uses ``fold_in(key, i)``.
        step_size: ε, shared by all checkpoints; or ``"auto"``: :func:`slt.estimate_llc`'s choice made
            **once**, at the checkpoint ``reference`` (an index; default the last), and kept for every
            checkpoint (ε, γ, nβ, the warm-up at ε_w, burn-in and draws), so that the estimates are comparable;
            each checkpoint's chains warm up at ε_w from its own w_t, then run at ε. Where the draws were sized
            by the choice and a record fails a check that longer chains pass (an earlier checkpoint often mixes
            more slowly than the reference), that record continues from its final states, with the other
            failing records of its batch (``result.extensions`` says why; ε, γ and nβ do not change; a record
            that passes is left as it is).
        steps: training step of each checkpoint (default ``0..K-1``, or the orbax steps).
        checkpoint_batch_size: checkpoints per vmapped chunk (memory ∝ this × num_chains × model size).
        stacked: treat ``checkpoints`` as one pytree with a leading checkpoint axis even when its root is
            a list or tuple (by default a list/tuple is a sequence of checkpoints; any other pytree is
            taken as stacked).
        progress: a progress bar over chunks.
        reference: with ``step_size="auto"``: the index of the checkpoint where the choice is made.
        recalibrate: with ``step_size="auto"``: choose again at every checkpoint (then the estimates do not
            share their settings; each record's ``auto`` says what it used).
        precision, bias_tolerance, time_budget: as :func:`slt.estimate_llc`, for the choice (``time_budget`` bounds the
            calibration at the reference checkpoint, and the continuations of each batch of
            ``checkpoint_batch_size`` checkpoints, not the whole trajectory).
        norm_groups: ``groups`` of :func:`weight_norms` (how parameters are grouped for ``group_norms``).
        **settings: the other :func:`slt.estimate_llc` settings (``num_chains``, ``num_draws``,
            ``num_burnin``, ``batch_size``, ``nbeta``, ``localization``, ``sampler``, ``estimator``).

    Returns:
        :class:`LLCTrajectory`; with ``"auto"``, ``.auto`` holds the choice and ``.reference_step`` where it was
        made.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> checkpoints = [p.params + 1.0, p.params + 0.1, p.params]  # approaching the minimum w*
        >>> traj = slt.dynamics.llc_trajectory(p.loss_fn, checkpoints, p.data, key=jax.random.key(0), step_size=5e-3,
        ...                                    steps=[0, 100, 200], num_chains=2, num_draws=1000, num_burnin=100)
        >>> traj.llc_mean.shape, bool(abs(traj.llc_mean[-1] - 1.0) < 0.3)  # at w*: λ = d/2 = 1
        ((3,), True)
        >>> bool(np.isclose(traj.weight_norm[1], np.linalg.norm(p.params + 0.1)))  # ‖w_t‖₂ of each checkpoint
        True
        >>> auto = slt.dynamics.llc_trajectory(p.loss_fn, checkpoints, p.data, key=jax.random.key(0),
        ...                                    step_size="auto", time_budget=10.0)
        >>> auto.reference_step, {r.step_size for r in auto.results} == {auto.auto.step_size}
        (2, True)
    """
    key = as_key(key)
    ckpts, orbax_steps = _as_list(checkpoints, stacked)
    num = len(ckpts)
    if steps is None:
        steps = orbax_steps if orbax_steps is not None else list(range(num))
    steps = np.asarray(steps)
    if steps.shape != (num,):
        raise ValueError(f"`steps` must have one entry per checkpoint ({num}); got shape {steps.shape}.")
    validate.positive_int(checkpoint_batch_size, "checkpoint_batch_size")
    norm_record = _checkpoint_norms(model_or_loss, ckpts, steps, norm_groups)  # cheap: host float64 sums

    targets = [_target(model_or_loss, ckpt, data, loss=loss, where=where) for ckpt in ckpts]
    first = targets[0]
    for i, t in enumerate(targets[1:], start=1):
        same_tree = jax.tree_util.tree_structure(t.position) == jax.tree_util.tree_structure(first.position)
        if not same_tree or t.loss != first.loss:
            raise ValueError(f"checkpoint {i} does not have the structure of checkpoint 0; all must match.")
    choice, reference_step = None, None
    draws_sized_by_auto = isinstance(step_size, str) and settings.get("num_draws") is None
    burnin_sized_by_auto = settings.get("num_burnin") is None
    if isinstance(step_size, str):
        if step_size != "auto":
            raise ValueError(f"`step_size` must be a positive number or 'auto'; got {step_size!r}.")
        if isinstance(reference, bool) or not isinstance(reference, (int, np.integer)) or not -num <= reference < num:
            raise ValueError(f"`reference` must be a checkpoint index in [-{num}, {num}); got {reference!r}.")
        key, cal_key, warm_key = jax.random.split(key, 3)
        auto_kwargs = dict(
            precision=precision,
            bias_tolerance=bias_tolerance,
            time_budget=time_budget,
            progress=progress,
            **{k: v for k, v in settings.items() if k not in ("estimator",)},
        )
        if recalibrate:
            traj = _recalibrated(targets, steps, key, cal_key, warm_key, auto_kwargs, settings)
            return _with_norms(traj, norm_record)
        num_draws, num_burnin = auto_kwargs.pop("num_draws", None), auto_kwargs.pop("num_burnin", None)
        choice = auto_settings(
            targets[reference], cal_key, num_draws=num_draws, num_burnin=num_burnin, **_with_chains(auto_kwargs)
        )
        reference_step = int(steps[reference])
        settings = {**settings, **_chosen(choice)}
        step_size = choice.step_size
    cfg = SamplingSettings.validated(
        num_data=first.num_data, step_size=step_size, num_params=first.num_parameters, **settings
    )
    per_example = [check_loss_at_center(t, cfg.chunk_size) for t in targets]
    results = _run_checkpoints(
        targets,
        cfg,
        per_example,
        key,
        choice,
        None if choice is None else warm_key,
        checkpoint_batch_size,
        progress,
        extend=None
        if not draws_sized_by_auto
        else dict(precision=precision, drop_allowed=burnin_sized_by_auto, time_budget=time_budget),
    )
    return _with_norms(_trajectory(steps, results, auto=choice, reference_step=reference_step), norm_record)


def _with_chains(kwargs: dict) -> dict:
    return {"num_chains": 4, **kwargs}


def _chosen(choice) -> dict:
    """The settings an AutoChoice fixes for every record."""
    return dict(
        num_draws=choice.num_draws,
        num_burnin=choice.num_burnin,
        nbeta=choice.nbeta,
        localization=choice.localization,
    )


def _trajectory(steps, results, **extra) -> LLCTrajectory:
    return LLCTrajectory(
        steps=np.asarray(steps),
        llc_mean=np.array([r.llc_mean for r in results]),
        llc_std=np.array([r.llc_std for r in results]),
        llc_mcse=np.array([r.llc_mcse for r in results]),
        init_loss=np.array([r.init_loss for r in results]),
        results=list(results),
        **extra,
    )


def _run_checkpoints(
    targets, cfg, per_example, key, choice, warm_key, checkpoint_batch_size, progress, offset=0, extend=None
):
    """Every checkpoint with the settings ``cfg``, ``checkpoint_batch_size`` at a time (vmapped); with an
    AutoChoice that has a warm-up, each checkpoint's chains first run ``num_warmup`` steps at ε_w from its w_t.

    ``extend`` (draws sized by ``step_size="auto"``: ``{"precision", "drop_allowed", "time_budget"}``): the records
    of a chunk that fail a check longer chains pass are continued from their final states, together (vmapped),
    by the most draws any of them needs (:func:`slt._src.auto.plan_extension`, at most ``EXTENSIONS`` times, and
    in all at most ``time_budget`` seconds per chunk at the measured time per step); each record's kept draws
    that must join the burn-in are its own. A record that passes is left as it is (it reads what it would read
    alone), and a step of the continuation costs what the failing records cost, not the whole chunk. ε, γ and
    nβ stay those of every record."""
    num = len(targets)
    first = targets[0]
    chunk = min(checkpoint_batch_size, num)
    results: list[LLCResult] = []
    bar = Progress(progress, num, f"LLC trajectory ({cfg.num_chains} chains)", unit="checkpoints", first="batch")
    batched = ("center", "frozen", "example_losses_at_center", "key")
    extra = {} if choice is None else {"steps_per_chunk": choice.steps_per_chunk}

    def inputs(which):  # the batched inputs of the checkpoints ``which``
        return dict(
            example_losses_at_center=jnp.stack([jnp.asarray(per_example[i]) for i in which]),
            center=_stack([targets[i].position for i in which]),
            frozen=_stack([targets[i].frozen for i in which]),
            nbeta=cfg.nbeta,
            localization=cfg.localization,
            num_chains=cfg.num_chains,
            batch_size=cfg.batch_size,
            sampler=cfg.sampler,
            **extra,
        )

    for start in range(0, num, chunk):
        idx = [min(i, num - 1) for i in range(start, start + chunk)]  # pad the last chunk by repetition
        t0 = time.perf_counter()
        init_position = None
        if choice is not None and choice.num_warmup:
            warm = run_chains(
                first,
                key=jnp.stack([jax.random.fold_in(warm_key, offset + i) for i in idx]),
                num_steps=choice.num_warmup,
                sampler_params={**cfg.all_sampler_params, "step_size": choice.warmup_step_size},
                batched=batched,
                description="warm-up",
                **inputs(idx),
            )
            init_position = getattr(warm.final_state, "position", None)
        t_run = time.perf_counter()
        trace = run_chains(
            first,
            key=jnp.stack([jax.random.fold_in(key, offset + i) for i in idx]),
            num_steps=cfg.num_burnin + cfg.num_draws,
            sampler_params=cfg.all_sampler_params,
            batched=batched + (("init_position",) if init_position is not None else ()),
            init_position=init_position,
            **inputs(idx),
        )
        live = idx[: min(chunk, num - start)]
        # seconds per step of this chunk's run (its compile included: an upper bound), to bound the continuations
        per_step = (time.perf_counter() - t_run) / max(cfg.num_burnin + cfg.num_draws, 1)
        traces = [_one_record(trace, j) for j in range(len(live))]
        position = getattr(trace.final_state, "position", None)
        positions = [
            None if position is None else jax.tree_util.tree_map(lambda x, j=j: x[j], position)
            for j in range(len(live))
        ]
        burnin = [cfg.num_burnin] * len(live)
        extended: list[list[str]] = [[] for _ in live]

        def summarized(j, wall, live=live, burnin=burnin, traces=traces):
            tr = traces[j]
            record_cfg = dataclasses.replace(cfg, num_burnin=burnin[j], num_draws=tr.loss.shape[-1] - burnin[j])
            return summarize_run(
                record_cfg,
                tr.loss,
                tr.loss_at_center,
                per_example[live[j]],
                wall,
                divergence_step=tr.divergence_step,
            )

        batch = [summarized(j, (time.perf_counter() - t0) / chunk) for j in range(len(live))]
        spent = 0.0
        for k in range(EXTENSIONS if extend is not None and position is not None else 0):
            budget = extend["time_budget"] - spent
            plans = [
                plan_extension(
                    r,
                    precision=extend["precision"],
                    drop_allowed=extend["drop_allowed"],
                    max_draws=int(budget / per_step),
                )
                for r in batch
            ]
            need = [j for j, p in enumerate(plans) if p is not None]
            if not need:
                break
            spc = choice.steps_per_chunk
            steps = -(-max(plans[j].draws for j in need) // spc) * spc  # whole chunks of the compiled program
            t_more = time.perf_counter()
            more = run_chains(
                first,
                key=jnp.stack(
                    [jax.random.fold_in(jax.random.fold_in(key, EXTENSION_KEY + k), offset + live[j]) for j in need]
                ),
                num_steps=steps,
                sampler_params=cfg.all_sampler_params,
                batched=batched + ("init_position",),
                init_position=_stack([positions[j] for j in need]),
                description="LLC trajectory: continuing",
                **inputs([live[j] for j in need]),
            )
            elapsed = time.perf_counter() - t_more
            spent += elapsed
            # these records' program per step (a new number of records compiles once: an upper bound after it)
            per_step = elapsed / steps
            for n, j in enumerate(need):
                traces[j] = continue_trace(traces[j], _one_record(more, n), traces[j].loss.shape[-1])
                positions[j] = jax.tree_util.tree_map(lambda x, n=n: x[n], more.final_state.position)
                burnin[j] += plans[j].drop
                joined = f", the first {plans[j].drop} kept draws joined the burn-in" if plans[j].drop else ""
                extended[j].append(f"{plans[j].reason}: continued by {steps} draws{joined}")
                batch[j] = summarized(j, (time.perf_counter() - t0) / chunk)
        for j, res in enumerate(batch):
            res.auto = choice
            res.extensions = extended[j]
            results.append(res)
        bar.update(min(start + chunk, num))
    return results


def _one_record(trace: ChainTrace, j: int) -> ChainTrace:
    """Record ``j`` of a trace over a batch of checkpoints (its final state is left out: positions are kept apart)."""
    return ChainTrace(
        np.asarray(trace.loss)[j],
        np.asarray(trace.loss_at_center)[j],
        None,
        {k: np.asarray(v)[j] for k, v in trace.info.items()},
        np.asarray(trace.divergence_step)[j],
    )


def _recalibrated(targets, steps, key, cal_key, warm_key, auto_kwargs, settings) -> LLCTrajectory:
    """``recalibrate=True``: an independent ``step_size="auto"`` choice and run at every checkpoint."""
    results = []
    num_draws, num_burnin = auto_kwargs.pop("num_draws", None), auto_kwargs.pop("num_burnin", None)
    progress = auto_kwargs.get("progress", False)
    for i, target in enumerate(targets):
        choice = auto_settings(
            target,
            jax.random.fold_in(cal_key, i),
            num_draws=num_draws,
            num_burnin=num_burnin,
            **_with_chains(auto_kwargs),
        )
        cfg = SamplingSettings.validated(
            num_data=target.num_data,
            step_size=choice.step_size,
            num_params=target.num_parameters,
            **{**settings, **_chosen(choice)},
        )
        (res,) = _run_checkpoints(
            [target], cfg, [choice.example_losses_at_center], key, choice, warm_key, 1, progress, offset=i
        )
        results.append(res)
    return _trajectory(steps, results)


def _target(model_or_loss, checkpoint, data, *, loss, where):
    """The target at one checkpoint, for a loss function or an NNX module structure."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        nnx = None
    if nnx is not None and isinstance(model_or_loss, nnx.Module):
        if isinstance(checkpoint, nnx.Module):
            model = checkpoint
        else:
            model = nnx.clone(model_or_loss)
            nnx.update(model, checkpoint)
        return make_target(model, data, loss=loss, where=where)
    return make_target(model_or_loss, checkpoint, data, loss=loss, where=where)


# ------------------------------------------------------------------------------------------- weight norms
def weight_norms(params_or_model, *, groups: Callable | None = None) -> tuple[float, dict[str, float]]:
    r"""The weight norm :math:`\lVert w\rVert_2`, in total and per parameter group, computed on the host in float64.

    Groups (by default): for an ``nnx.Module`` (or an ``nnx.State``), the parameters (``nnx.Param``) of each
    submodule, named by its path (``"layer1"``, ``"blocks.0.attn"``; a parameter set on the root module is its
    own group); for any other pytree, its top-level entries (``"0"``, ``"1"`` for a list of layers; the keys of
    a dict), descending through a root with a single entry (Linen's ``{"params": {...}}`` groups by layer). A
    bare array is the group ``"w"``. ``groups(path) -> name`` overrides this: ``path`` is the leaf's path as a
    tuple of names (dict keys, attribute names, list indices as strings).

    There is no general relation between this norm and the LLC (SCIENCE.md §5, §7); the norm sets the
    effective step of scale-free optimizers such as Adam, :math:`\lVert\Delta w\rVert/\lVert w\rVert`.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import weight_norms
        >>> total, by_group = weight_norms([np.full((2, 2), 1.5), np.full(4, 2.0)])  # a list of two layers
        >>> float(total), {k: float(v) for k, v in by_group.items()}
        (5.0, {'0': 3.0, '1': 4.0})
    """
    names, leaves = _named_leaves(params_or_model, groups)
    sq: dict[str, float] = {}
    for name, leaf in zip(names, leaves):
        sq[name] = sq.get(name, 0.0) + float(np.sum(np.square(leaf)))
    return math.sqrt(sum(sq.values())), {k: math.sqrt(v) for k, v in sq.items()}


def _path_names(path) -> tuple[str, ...]:
    out = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                out.append(str(getattr(entry, attr)))
                break
        else:  # pragma: no cover
            out.append(str(entry))
    return tuple(out)


def _param_tree(params_or_model):
    """``(tree, is_nnx)``: the parameters of an NNX module or state (``nnx.Param`` only), or the pytree itself."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        return params_or_model, False
    if isinstance(params_or_model, nnx.Module):
        return nnx.state(params_or_model, nnx.Param), True
    if isinstance(params_or_model, nnx.State):
        try:
            return nnx.filter_state(params_or_model, nnx.Param), True
        except Exception:  # a state of plain arrays (no variable types): take it whole
            return params_or_model, True
    return params_or_model, False


def _named_leaves(params_or_model, groups) -> tuple[list[str], list[np.ndarray]]:
    """Each leaf's group name and its host copy in float64."""
    if groups is not None and not callable(groups):
        raise ValueError(f"`groups` must be a function path -> group name, or None; got {groups!r}.")
    tree, is_nnx = _param_tree(params_or_model)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not flat:
        raise ValueError("the parameters have no array leaves: nothing to take the norm of.")
    paths = [_path_names(p) for p, _ in flat]
    if is_nnx:
        paths = [p[:-1] if len(p) > 1 and p[-1] == "value" else p for p in paths]  # Variable.value
    leaves = [np.asarray(leaf, dtype=np.float64) for _, leaf in flat]
    if groups is not None:
        return [str(groups(p)) for p in paths], leaves
    if is_nnx:
        return [".".join(p[:-1]) if len(p) > 1 else ".".join(p) for p in paths], leaves
    depth = 0  # descend through single-entry roots
    while all(len(p) > depth + 1 for p in paths) and len({p[depth] for p in paths}) == 1:
        depth += 1
    return [p[depth] if len(p) > depth else "w" for p in paths], leaves


class _NormRecorder:
    """Weight norms at each record and the effective step ‖Δw‖/‖w‖ between records (host, float64).

    The effective step at record k is :math:`\\lVert w_k - w_{k-1}\\rVert_g / (\\lVert w_k\\rVert_g (s_k - s_{k-1}))`
    per group g (the net displacement per optimizer step, relative to the weights), or, when the optimizer's
    update u that produced w_k is given, :math:`\\lVert u\\rVert_g / \\lVert w_k\\rVert_g` (one step). NaN at the
    first record without an update, and where the steps do not increase."""

    def __init__(self, groups=None):
        self.groups = groups
        self.steps: list[int] = []
        self.total: list[float] = []
        self.by_group: list[dict[str, float]] = []
        self.step_total: list[float] = []
        self.step_by_group: list[dict[str, float]] = []
        self.from_update: list[bool] = []
        self._previous = None  # (names, leaves) of the last record
        self._undo = None

    def record(self, step: int, params_or_model, update=None) -> None:
        names, leaves = _named_leaves(params_or_model, self.groups)
        norms = _group_sums(names, [np.square(x) for x in leaves])
        if update is not None:
            u_names, u_leaves = _named_leaves(update, self.groups)
            if [x.shape for x in u_leaves] != [x.shape for x in leaves]:
                raise ValueError(
                    "`update` must have the structure and shapes of the parameters (the optimizer's update that "
                    f"produced them); got leaf shapes {[x.shape for x in u_leaves]}, expected "
                    f"{[x.shape for x in leaves]}."
                )
            moved, per_step = _group_sums(names, [np.square(u) for u in u_leaves]), 1.0
        elif self._previous is not None and int(step) > self.steps[-1]:
            prev_names, prev = self._previous
            if prev_names != names or [x.shape for x in prev] != [x.shape for x in leaves]:
                raise ValueError(f"the parameters at step {step} do not have the structure of the previous record.")
            moved = _group_sums(names, [np.square(a - b) for a, b in zip(leaves, prev)])
            per_step = float(int(step) - self.steps[-1])
        else:
            moved, per_step = None, 1.0
        self.steps.append(int(step))
        self.total.append(math.sqrt(sum(norms.values())))
        self.by_group.append({k: math.sqrt(v) for k, v in norms.items()})
        if moved is None:
            self.step_total.append(math.nan)
            self.step_by_group.append({k: math.nan for k in norms})
        else:
            self.step_total.append(_ratio(math.sqrt(sum(moved.values())), self.total[-1]) / per_step)
            self.step_by_group.append({k: _ratio(math.sqrt(moved[k]), math.sqrt(norms[k])) / per_step for k in norms})
        self.from_update.append(update is not None)
        self._undo, self._previous = self._previous, (names, leaves)

    def pop(self) -> None:
        """Forget the last record (its estimate failed)."""
        for values in (self.steps, self.total, self.by_group, self.step_total, self.step_by_group, self.from_update):
            values.pop()
        self._previous = self._undo

    def fields(self) -> dict:
        """The :class:`LLCTrajectory` fields of these records."""
        names = list(self.by_group[0]) if self.by_group else []
        return dict(
            weight_norm=np.array(self.total),
            group_norms={k: np.array([g.get(k, np.nan) for g in self.by_group]) for k in names},
            effective_step=np.array(self.step_total),
            group_effective_step={k: np.array([g.get(k, np.nan) for g in self.step_by_group]) for k in names},
            step_from_update=np.array(self.from_update, dtype=bool),
        )


def _group_sums(names, squares) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, sq in zip(names, squares):
        out[name] = out.get(name, 0.0) + float(np.sum(sq))
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (math.nan if a == 0 else math.inf)


def _with_norms(traj: LLCTrajectory, recorder: _NormRecorder) -> LLCTrajectory:
    """``traj`` with the weight-norm fields of ``recorder`` (one record per checkpoint)."""
    for name, value in recorder.fields().items():
        setattr(traj, name, value)
    return traj


def _checkpoint_norms(model_or_loss, ckpts, steps, groups) -> _NormRecorder:
    """Norms of each checkpoint's parameters (for NNX: the ``nnx.Param`` of the module each checkpoint makes)."""
    recorder = _NormRecorder(groups)
    for step, ckpt in zip(steps, ckpts):
        recorder.record(int(step), _nnx_params(model_or_loss, ckpt))
    return recorder


def _nnx_params(model_or_loss, checkpoint):
    """An NNX checkpoint as its module's ``nnx.Param`` state (a state may also hold other variables)."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        return checkpoint
    if isinstance(model_or_loss, nnx.Module) and not isinstance(checkpoint, nnx.Module):
        model = nnx.clone(model_or_loss)
        nnx.update(model, checkpoint)
        return nnx.state(model, nnx.Param)
    return checkpoint
