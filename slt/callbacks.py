"""Training-loop integration: estimate the LLC (and record probe outputs) every ``every`` steps.

:class:`LLCTracker` is a plain object a training loop calls with the step and the current parameters (or
NNX model). It reuses one compiled sampler for all its estimates, because every call has the same loss,
shapes and static settings (hyperparameter values and keys are traced), so no call after the first
compiles anything. The recorded outputs on a fixed probe set feed :func:`slt.dynamics.essential_dynamics`.
Each record also keeps the weight norm ‖w‖₂ (total and per group) and Adam's effective step ‖Δw‖/‖w‖ since the
previous record, on the host (no compilation): the LLC and the norm need not move together.

Example (plain optax loop)::

    tracker = slt.callbacks.LLCTracker(loss_fn, data, key=jax.random.key(0), step_size=1e-5, every=100,
                                       probe=x_probe, output_fn=lambda p, x: forward(p, x))
    for step in range(num_steps):
        params, opt_state = update(params, opt_state, next_batch())
        tracker(step, params)
    traj = tracker.trajectory()          # LLC over training, with .weight_norm and .effective_step
    outputs = tracker.outputs()          # (num_records, *probe_output_shape)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from slt._src import validate
from slt._src.validate import as_key
from slt.dynamics.trajectory import _NormRecorder
from slt.llc import LLCResult, SamplingWarning, estimate_llc

__all__ = ["LLCTracker"]


class LLCTracker:
    """Call ``tracker(step, params_or_model)`` in a training loop; every ``every`` steps it estimates the LLC.

    Args:
        model_or_loss: ``loss_fn(params, batch)``, or an ``nnx.Module`` *class instance structure* (pass
            the model itself at each call) with ``loss=``; see :func:`slt.estimate_llc`.
        data: the data for the LLC estimates (its full-data loss is recorded as the training loss).
        key: a ``jax.random.key``; the estimate at step ``s`` uses ``fold_in(key, s)``.
        step_size: ε for every estimate; or ``"auto"``: the choice of :func:`slt.estimate_llc` made **once**,
            at the record ``reference`` (an index into the records; default the last), and kept for every
            record, so that the estimates share ε, γ and nβ. Since the last record is not known while
            training, the tracker then keeps a host copy of the parameters at each record and estimates every
            record together (:func:`slt.dynamics.llc_trajectory`, compiled once) when a result is first asked
            for (``results``, ``llc_mean``, :meth:`trajectory`, ...); ``__call__``/:meth:`record` return None.
            ``recalibrate=True`` instead chooses again at every record, estimating immediately (records then
            do not share their settings).
        reference, recalibrate: see ``step_size="auto"``.
        every: estimate when ``step % every == 0`` (and on :meth:`record`, whatever the step).
        probe: optional fixed inputs whose outputs are recorded at each estimate (essential dynamics).
        output_fn: ``output_fn(params, probe)`` for the loss-function form; NNX models are called directly.
        loss, where: as in :func:`slt.estimate_llc`.
        norm_groups: ``groups`` of :func:`slt.dynamics.weight_norms`: how the parameters are grouped for the
            per-group norms (default: per submodule for NNX, per top-level entry of a pytree).
        **settings: the other :func:`slt.estimate_llc` settings.

    At each record the tracker also records, on the host in float64 (one device-to-host copy of the parameters
    per record, nothing compiled): the weight norm ‖w_t‖₂ in total and per group (:attr:`weight_norm`,
    :attr:`group_norms`), and the effective step (:attr:`effective_step`, :attr:`group_effective_step`):
    ‖w_t − w_prev‖ / (‖w_t‖ (s_t − s_prev)), the net relative displacement per optimizer step since the
    previous record, or ‖u_t‖/‖w_t‖ exactly when the optimizer's update u_t is passed
    (``tracker(step, params, update=updates)``). With Adam the update's size is set by the learning rate, not
    by the weights, so a large norm means a small effective step (SCIENCE.md §7). The tracker keeps the
    previous record's parameters on the host for the difference.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> x, _ = p.data
        >>> tracker = slt.callbacks.LLCTracker(p.loss_fn, p.data, key=jax.random.key(0), step_size=5e-3, every=10,
        ...                                    probe=x[:3], output_fn=lambda w, x: x @ w,
        ...                                    num_chains=2, num_draws=1000, num_burnin=100)
        >>> params = p.params + 1.0  # gradient descent from a point off the minimum
        >>> for step in range(21):
        ...     _ = tracker(step, params)  # estimates at steps 0, 10 and 20
        ...     params = params - 0.5 * jax.grad(p.loss_fn)(params, p.data)
        >>> tracker.steps, tracker.llc_mean.shape, tracker.outputs().shape
        ([0, 10, 20], (3,), (3, 3))
        >>> bool(tracker.train_loss[-1] < tracker.train_loss[0]), bool(abs(tracker.llc_mean[-1] - 1.0) < 0.3)
        (True, True)
        >>> len(tracker.trajectory())
        3
        >>> tracker.weight_norm.shape, bool(np.isnan(tracker.effective_step[0]))  # no previous record at step 0
        ((3,), True)
    """

    def __init__(
        self,
        model_or_loss,
        data,
        *,
        key,
        step_size,
        every: int = 100,
        probe: Any = None,
        output_fn: Callable | None = None,
        loss=None,
        where=None,
        reference: int = -1,
        recalibrate: bool = False,
        norm_groups: Callable | None = None,
        **settings,
    ):
        validate.positive_int(every, "every")
        if isinstance(step_size, str) and step_size != "auto":
            raise ValueError(f"`step_size` must be a positive number or 'auto'; got {step_size!r}.")
        self._deferred = step_size == "auto" and not recalibrate
        self.reference = reference
        self._loss_fn = model_or_loss
        self._is_nnx = _is_nnx(model_or_loss)
        if probe is not None and output_fn is None and not self._is_nnx:
            raise ValueError("`output_fn(params, probe)` is required to record outputs for a loss function.")
        self.data = data
        self.key = as_key(key)
        self.every = every
        self.probe = probe
        self._output_fn = jax.jit(output_fn) if output_fn is not None else None
        self._kwargs = dict(step_size=step_size, loss=loss, where=where, **settings)
        self.steps: list[int] = []
        self._results: list[LLCResult] = []
        self._checkpoints: list[Any] = []  # host copies, for a deferred step_size="auto"
        self._trajectory = None
        self._warned = 0
        self._outputs: list[np.ndarray] = []
        self._norms = _NormRecorder(norm_groups)

    def __call__(self, step: int, params_or_model, *, update=None) -> LLCResult | None:
        """Estimate at this step if it is due; returns the result, or ``None`` when not due. ``update``: the
        optimizer's update that produced these parameters (optional; for the effective step, see the class)."""
        if int(step) % self.every != 0:
            return None
        return self.record(step, params_or_model, update=update)

    def record(self, step: int, params_or_model, *, update=None) -> LLCResult | None:
        """Estimate now, whatever the step (with a deferred ``step_size="auto"``: keep the parameters)."""
        self._norms.record(int(step), params_or_model, update)  # first: a malformed `update` raises before sampling
        try:
            return self._record(step, params_or_model)
        except BaseException:
            self._norms.pop()
            raise

    def _record(self, step: int, params_or_model) -> LLCResult | None:
        result = None
        if self._deferred:
            state = nnx_state(params_or_model) if self._is_nnx else params_or_model
            self._checkpoints.append(jax.tree_util.tree_map(lambda x: np.array(x), state))
            self._trajectory = None
        else:
            key = jax.random.fold_in(self.key, int(step))
            if self._is_nnx:
                result = estimate_llc(params_or_model, self.data, key=key, **self._kwargs)
            else:
                result = estimate_llc(self._loss_fn, params_or_model, self.data, key=key, **self._kwargs)
            self._results.append(result)
        self.steps.append(int(step))
        if self.probe is not None:
            out = params_or_model(self.probe) if self._is_nnx else self._output_fn(params_or_model, self.probe)
            self._outputs.append(np.asarray(out))
        return result

    @property
    def results(self) -> list[LLCResult]:
        """The records' :class:`slt.LLCResult` (computed now for a deferred ``step_size="auto"``)."""
        if self._deferred:
            return self.trajectory().results
        return self._results

    @property
    def llc_mean(self) -> np.ndarray:
        return np.array([r.llc_mean for r in self.results])

    @property
    def llc_std(self) -> np.ndarray:
        return np.array([r.llc_std for r in self.results])

    @property
    def weight_norm(self) -> np.ndarray:
        """(R,) ‖w‖₂ at each record (available without estimating, also with a deferred ``"auto"``)."""
        return self._norms.fields()["weight_norm"]

    @property
    def group_norms(self) -> dict[str, np.ndarray]:
        """Group name → (R,) ‖w‖₂ of that group at each record."""
        return self._norms.fields()["group_norms"]

    @property
    def effective_step(self) -> np.ndarray:
        """(R,) ‖Δw‖/‖w‖ per optimizer step since the previous record (or of the passed update); NaN at the first."""
        return self._norms.fields()["effective_step"]

    @property
    def group_effective_step(self) -> dict[str, np.ndarray]:
        """Group name → (R,) the effective step of that group."""
        return self._norms.fields()["group_effective_step"]

    @property
    def train_loss(self) -> np.ndarray:
        """Full-data loss L_n at each recorded step."""
        return np.array([r.init_loss for r in self.results])

    def outputs(self) -> np.ndarray:
        """Recorded probe outputs, shape ``(num_records, *output_shape)``."""
        if not self._outputs:
            raise ValueError("no outputs were recorded: pass `probe=` (and `output_fn=` for a loss function).")
        return np.stack(self._outputs)

    def trajectory(self):
        """The records as an :class:`slt.dynamics.trajectory.LLCTrajectory`. Emits one :class:`slt.SamplingWarning`
        listing the records that fail a health check (once per new failing record)."""
        from slt.dynamics.trajectory import _trajectory, _with_norms, llc_trajectory

        if not self.steps:
            raise ValueError("the tracker has no records yet: call it from the training loop first.")
        if self._deferred:
            if self._trajectory is None:
                kwargs = dict(self._kwargs)
                kwargs.pop("step_size")
                self._trajectory = llc_trajectory(
                    self._loss_fn,
                    list(self._checkpoints),
                    self.data,
                    key=self.key,
                    step_size="auto",
                    steps=list(self.steps),
                    reference=self.reference,
                    **kwargs,
                )
            traj = self._trajectory
        else:
            traj = _trajectory(self.steps, self._results)
        traj = _with_norms(traj, self._norms)  # the tracker's own records (with any passed updates)
        failing = np.flatnonzero(traj.failing)
        if failing.size > self._warned:
            self._warned = failing.size
            warnings.warn(
                f"LLCTracker: {failing.size} of {len(traj)} records fail a health check (steps "
                f"{', '.join(str(traj.steps[k]) for k in failing[:10])}{', ...' if failing.size > 10 else ''}); "
                "see trajectory().health() for what and what to do.",
                SamplingWarning,
                stacklevel=2,
            )
        return traj


def nnx_state(model):
    """The NNX model's state (what :func:`slt.dynamics.llc_trajectory` takes as a checkpoint)."""
    from flax import nnx

    return nnx.state(model)


def _is_nnx(obj) -> bool:
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, nnx.Module)
