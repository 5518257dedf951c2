r"""Bayesian influence functions and susceptibilities: posterior covariances of per-sample losses.

Both are read from **one** sampling run of the engine (:func:`slt.sample`) around w*, on the localized tempered
posterior

.. math:: p_\beta(w) \propto \exp\!\big(-n\beta L_n(w)\big)\,
          \exp\!\big(-\tfrac{\gamma}{2}\lVert w - w^*\rVert^2\big),
          \qquad n\beta L_n(w) = \beta \textstyle\sum_{k=1}^n \ell_k(w),

and are *linear responses* of posterior expectations to a reweighting of the data (fluctuation–dissipation):
if the tempered likelihood becomes :math:`n\beta L_n(w) + h\,V(w)`, then
:math:`\partial_h \mathbb E_h[\varphi]\big|_{h=0} = -\mathrm{Cov}(\varphi, V)`.

* :func:`bif`: the **Bayesian influence function** (Kreer et al., arXiv 2509.26544). For probe examples
  :math:`z_i, z_j` with losses :math:`\ell_i(w), \ell_j(w)`, the posterior covariance
  :math:`C_{ij} = \mathrm{Cov}(\ell_i, \ell_j)` (``covariance``) and the influence

  .. math:: \mathrm{BIF}_{ij} = -\beta\, C_{ij} = -\frac{n\beta}{n}\,\mathrm{Cov}(\ell_i, \ell_j)

  (``influence``): the response of the expected loss :math:`\mathbb E[\ell_j]` to upweighting example *i* in the
  tempered likelihood :math:`\beta\sum_k \ell_k` by *h* (:math:`V = \beta\ell_i`), per unit *h*. Kreer et al. and
  the authors' overview (Timaeus, "influence functions" post) define influence as this response of the expected
  loss to sample reweighting, and the BIF as the negative posterior covariance of the losses; whether their
  formula carries the factor β could not be checked from the sources available when this was written, so it is
  written out here. A negative influence: upweighting *i* lowers the expected loss on *j*. ``covariance`` is
  unscaled, so any other convention is one multiplication away.
* :func:`susceptibilities`: the **component × probe susceptibility matrix** (Baker et al.,
  arXiv 2504.18274). Shifting the data distribution from the training distribution toward a probe distribution
  *q*, :math:`L_n \to (1-h) L_n + h L_q`, changes the posterior expectation of an observable φ by

  .. math:: \chi_{\varphi, q} = \partial_h \mathbb E_h[\varphi]\big|_{h=0}
            = -\mathrm{Cov}\big(\varphi(w),\; n\beta\,[L_q(w) - L_n(w)]\big),

  the first-order change of the posterior expectation of a component-localized observable per unit shift of
  the data distribution, which is how Baker et al. define the susceptibility. The sign follows from that
  definition (a negative χ: shifting the data toward *q* lowers E[φ]); ``tests/test_influence.py`` checks the
  formula and its sign against the exact derivative on a Gaussian model. The observable of component *C* is the
  loss with only *C*'s weights taken from the draw and every other weight at w*,

  .. math:: \varphi_C(w) = L_{\mathrm{ref}}(w_C, w^*_{\neg C}),

  on a reference set (default: the training data), the "component-localized" loss. (Localizing instead by
  sampling only *C*'s weights, the weight-restricted posterior of Wang et al., arXiv 2410.02984, is this function
  with ``where=`` *C* and one component selecting every leaf.) χ factorizes into signed per-example (per-token)
  contributions, :math:`\chi_{C,q} = \frac1{N_q}\sum_x -n\beta\,\mathrm{Cov}(\varphi_C, \ell_x - L_n)`, returned as
  ``contributions``.

Monte-Carlo error. Every covariance entry :math:`\widehat{\mathrm{Cov}}(a, b)` is the mean over the kept draws of
the chains that did not diverge of :math:`(a - \bar a)(b - \bar b)` (pooled means). Its MCSE is by **batch means**:
each chain's draws are cut into ``num_batches`` consecutive batches, and the MCSE is the standard deviation of the
(chain, batch) means of the product divided by :math:`\sqrt{\text{chains} \times \text{batches}}`. This accounts
for autocorrelation as long as a batch is much longer than the autocorrelation time (check ``ess``); with fewer
than 2 batches in total it is NaN.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt import diagnostics
from slt._src import validate
from slt._src.auto import prepare_run
from slt._src.driver import sample
from slt._src.observables import DrawContext, Observable, per_sample_loss
from slt._src.results import Result
from slt._src.validate import as_key
from slt.calibration import BIAS_TOLERANCE
from slt.llc import SamplingWarning
from slt.targets import (
    Target,
    _LinenLoss,
    _MaskedFunctionLoss,
    _NNXLoss,
    check_data,
    make_target,
    path_names,
)

__all__ = ["BIFResult", "SusceptibilityResult", "bif", "susceptibilities"]

PyTree = Any
DEFAULT_NUM_BATCHES = 20


# ------------------------------------------------------------------------------------------- covariances
def cross_covariance(a: np.ndarray, b: np.ndarray, num_batches: int = DEFAULT_NUM_BATCHES):
    """``(cov, mcse)`` of every pair of columns of ``a`` (C, D, K) and ``b`` (C, D, Q): the pooled covariance over
    chains and draws (divisor C·D), shape (K, Q), and its batch-means MCSE (see the module docstring).

    Example:
        >>> import numpy as np
        >>> from slt.influence import cross_covariance
        >>> x = np.random.default_rng(0).normal(size=(4, 2000, 2)) * [1.0, 2.0]  # independent, variances 1 and 4
        >>> cov, mcse = cross_covariance(x, x)
        >>> bool(np.all(np.abs(cov - np.diag([1.0, 4.0])) < 4 * mcse)), mcse.shape
        (True, (2, 2))
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num_chains, num_draws = a.shape[:2]
    ac = a - a.mean(axis=(0, 1))
    bc = b - b.mean(axis=(0, 1))
    cov = np.einsum("cdk,cdq->kq", ac, bc) / (num_chains * num_draws)
    num_batches = int(min(num_batches, num_draws))
    size = num_draws // num_batches if num_batches else 0
    if num_chains * num_batches < 2 or size < 1:
        return cov, np.full_like(cov, np.nan)
    first = np.zeros_like(cov)
    second = np.zeros_like(cov)
    for c in range(num_chains):  # O(K·Q) memory: one batch's product at a time
        for j in range(num_batches):
            rows = slice(j * size, (j + 1) * size)
            m = np.einsum("dk,dq->kq", ac[c, rows], bc[c, rows]) / size
            first += m
            second += m * m
    count = num_chains * num_batches
    var = np.maximum(second - first * first / count, 0.0) / (count - 1)
    return cov, np.sqrt(var / count)


def _correlation(cov: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov / np.outer(sd, sd)


# --------------------------------------------------------------------------------------- observables
@dataclasses.dataclass(frozen=True)
class _UserProbeLoss:
    """``probe_loss(params, probe) -> (P,) or (P, T)``, with ``params`` in the user's form."""

    fn: Callable

    def __call__(self, ctx: DrawContext, probe):
        return self.fn(ctx.params, probe)


def _probe_observable(probe, probe_loss, argname: str) -> Observable:
    if probe_loss is None:
        return per_sample_loss(probe)
    if not callable(probe_loss):
        raise ValueError(
            f"`probe_loss` must be callable as probe_loss(params, batch) -> (P,) or (P, T); got {probe_loss!r}."
        )
    try:
        hash(probe_loss)
    except TypeError:
        raise ValueError("`probe_loss` must be hashable (a function is).") from None
    check_data(probe, argname)
    return Observable(_UserProbeLoss(probe_loss), data=probe, description="per-example loss on a probe set")


@dataclasses.dataclass(frozen=True)
class _ComponentLosses:
    """φ_C(w) = L_ref(w_C, w*_¬C) for each component, then L_ref(w): shape (K + 1,).

    ``masks[k]`` holds one entry per moving leaf: a Python bool (the whole leaf is in the component), or a
    :class:`_LeafMask` (a boolean array over the leaf, e.g. one attention head inside a fused projection, as a
    selector returning an array gives), spliced elementwise with ``jnp.where``."""

    masks: tuple

    def __call__(self, ctx: DrawContext, reference):
        leaves, treedef = jax.tree_util.tree_flatten(ctx.position)
        centre = jax.tree_util.tree_leaves(ctx.center)

        def splice(mask):
            out = []
            for m, w, c in zip(mask, leaves, centre):
                out.append((w if m else c) if isinstance(m, bool) else jnp.where(m.array, w, c))
            return jax.tree_util.tree_unflatten(treedef, out)

        values = [ctx.target_loss(splice(mask), ctx.frozen, reference) for mask in self.masks]
        values.append(ctx.target_loss(ctx.position, ctx.frozen, reference))
        return jnp.stack(values)


def _at_center(target: Target, observable: Observable) -> np.ndarray:
    """An observable evaluated once at w* (its shape, and a finiteness check before any sampling)."""
    return np.asarray(_evaluate_at(observable.fn, target.loss, target.position, target.frozen, observable.data))


@functools.partial(jax.jit, static_argnames=("fn", "loss"))
def _evaluate_at(fn, loss, position, frozen, data):
    return fn(DrawContext(position, frozen, position, None, None, None, loss), data)


def _check_like_data(probe, data, argname: str) -> None:
    check_data(probe, argname)
    p_leaves, p_def = jax.tree_util.tree_flatten(probe)
    d_leaves, d_def = jax.tree_util.tree_flatten(data)
    if p_def != d_def:
        raise ValueError(f"`{argname}` must have the structure of the training data ({d_def}); got {p_def}.")
    for p, d in zip(p_leaves, d_leaves):
        if np.shape(p)[1:] != np.shape(d)[1:]:
            raise ValueError(
                f"`{argname}` examples must have the shapes of the training examples: a leaf has per-example "
                f"shape {np.shape(p)[1:]} where the data has {np.shape(d)[1:]}."
            )


# --------------------------------------------------------------------------------------- components
def _moving_leaves(target: Target) -> list[tuple[tuple, Any]]:
    """``(path, leaf-or-variable)`` for every moving leaf, in the order of ``tree_leaves(target.position)``."""
    loss = target.loss
    if isinstance(loss, (_MaskedFunctionLoss, _LinenLoss)):
        full = target.rebuild(target.position)
        if isinstance(loss, _LinenLoss):
            full = full["params"]
        flat = jax.tree_util.tree_flatten_with_path(full)[0]
        return [(path_names(p), leaf) for (p, leaf), m in zip(flat, loss.mask) if m]
    flat = jax.tree_util.tree_flatten_with_path(target.position)[0]
    out = [(path_names(p), leaf) for p, leaf in flat]
    if isinstance(loss, _NNXLoss):
        from flax import nnx

        variables = {tuple(path): var for path, var in nnx.to_flat_state(target.position)}
        out = [(path, variables.get(path, leaf)) for path, leaf in out]
    return out


class _LeafMask:
    """A boolean array over one leaf, hashed and compared by value (the observable holding it must be hashable)."""

    __slots__ = ("array", "_key")

    def __init__(self, array):
        self.array = np.asarray(array, dtype=bool)
        self._key = (self.array.shape, np.packbits(self.array).tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other) -> bool:
        return isinstance(other, _LeafMask) and other._key == self._key


def _leaf_selection(value, leaf, name: str, path):
    """A selector's answer for one leaf: a bool (whole leaf) or a :class:`_LeafMask` (part of it)."""
    if np.ndim(value) == 0:
        return bool(value)
    shape = np.shape(getattr(leaf, "value", leaf))
    if np.shape(value) != shape:
        raise ValueError(
            f"component {name!r} returned a mask of shape {np.shape(value)} for {'.'.join(map(str, path))}, whose "
            f"shape is {shape}."
        )
    return _LeafMask(value)


def _component_masks(target: Target, components) -> tuple[tuple[str, ...], tuple]:
    """Names and, per component, one entry per moving leaf: a bool (whole leaf) or a :class:`_LeafMask` when the
    selector returns a boolean array for that leaf (a sub-array component such as one attention head)."""
    if not isinstance(components, Mapping) or not components:
        raise ValueError(
            "`components` must be a non-empty dict name -> selector, the selector a path predicate "
            "(path, leaf) -> bool for loss functions and linen, or an NNX filter for NNX models; "
            f"got {components!r}."
        )
    leaves = _moving_leaves(target)
    is_nnx = isinstance(target.loss, _NNXLoss)
    names, masks = [], []
    for name, selector in components.items():
        if not isinstance(name, str):
            raise ValueError(f"`components` names must be strings; got {name!r}.")
        if is_nnx:
            from flax import nnx

            predicate = nnx.filterlib.to_predicate(selector)
        elif callable(selector):
            predicate = selector
        else:
            raise ValueError(
                f"component {name!r}: expected a path predicate (path, leaf) -> bool; got {type(selector).__name__}."
            )
        mask = tuple(_leaf_selection(predicate(path, leaf), leaf, name, path) for path, leaf in leaves)
        if not any(m if isinstance(m, bool) else m.array.any() for m in mask):
            paths = ", ".join(".".join(map(str, p)) for p, _ in leaves[:8])
            raise ValueError(
                f"component {name!r} selects none of the moving parameters (they are: {paths}"
                f"{', ...' if len(leaves) > 8 else ''})."
            )
        names.append(name)
        masks.append(mask)
    return tuple(names), tuple(masks)


# ------------------------------------------------------------------------------------ shared run setup
@dataclasses.dataclass(frozen=True)
class _Sampled:
    """One run of :func:`_prepare_and_sample`: the kept records and the fields every influence result shares."""

    settings: Any
    records: dict
    diverged: np.ndarray
    divergence_step: np.ndarray
    common: dict  # nbeta, localization, step_size, ..., auto, localization_choice: the results' shared fields


def _prepare_and_sample(
    target,
    key,
    observables,
    *,
    estimator: str,
    thin,
    num_batches,
    chain_batch_size,
    mesh,
    store,
    progress,
    steps_per_chunk,
    **setup,
) -> _Sampled:
    """Choose the settings as :func:`slt.estimate_llc` does (:func:`slt._src.auto.prepare_run`), sample once
    recording ``observables`` at every kept draw, and leave out (with a warning naming them) chains that diverged.
    """
    validate.positive_int(thin, "thin")
    prepared = prepare_run(target, key, progress=progress, steps_per_chunk=steps_per_chunk, **setup)
    settings, choice, loc_choice = prepared.settings, prepared.choice, prepared.localization_choice
    run = sample(
        target,
        key=prepared.key,
        example_losses_at_center=prepared.per_example,
        nbeta=settings.nbeta,
        localization=settings.localization,
        num_chains=settings.num_chains,
        num_steps=settings.num_burnin + settings.num_draws * thin,
        batch_size=settings.batch_size,
        sampler=settings.sampler,
        sampler_params=settings.all_sampler_params,
        observables=observables,
        thin=thin,
        init_position=prepared.init_position,
        steps_per_chunk=prepared.steps_per_chunk,
        chain_batch_size=chain_batch_size,
        mesh=mesh,
        store=store,
        store_attrs={"estimator": estimator, **settings.describe()},
        progress=progress,
        description=estimator,
    )
    burn = -(-settings.num_burnin // thin)
    divergence_step = np.asarray(run.divergence_step)
    diverged = divergence_step >= 0
    if diverged.any():
        messages = diagnostics.divergence_messages(diverged, divergence_step)
        warnings.warn(
            f"{int(diverged.sum())} of {len(diverged)} chains diverged and are left out: " + " ".join(messages),
            SamplingWarning,
            stacklevel=3,
        )
    records = {name: np.asarray(v, dtype=np.float64)[:, burn:] for name, v in run.observables.items()}
    wall = run.wall_time + (0.0 if choice is None else choice.calibration_seconds + choice.warmup_seconds)
    if loc_choice is not None:
        wall += loc_choice.wall_time
    common = dict(
        nbeta=float(settings.nbeta),
        localization=float(settings.localization),
        step_size=float(settings.step_size),
        batch_size=int(settings.batch_size),
        num_data=int(settings.num_data),
        sampler=settings.sampler_name,
        num_batches=num_batches,
        thin=int(thin),
        diverged=diverged,
        divergence_step=divergence_step,
        wall_time=float(wall),
        notes=[choice.note] if choice is not None and choice.note else [],
        auto=choice,
        localization_choice=loc_choice,
    )
    return _Sampled(settings, records, diverged, divergence_step, common)


def _per_entry_diagnostics(trace: np.ndarray, healthy: np.ndarray, max_entries: int = 256):
    """R-hat and bulk ESS of each column of a (C, D, Q) trace over the healthy chains (NaN past ``max_entries``)."""
    q = trace.shape[2]
    rhat, ess = np.full(q, np.nan), np.full(q, np.nan)
    good = trace[healthy]
    if good.shape[0] == 0:
        return rhat, ess
    for i in range(min(q, max_entries)):
        if good.shape[0] > 1:
            rhat[i] = diagnostics.rhat(good[:, :, i])
        ess[i] = diagnostics.ess(good[:, :, i])
    return rhat, ess


def _health_warnings(rhat, ess, diverged, what: str) -> list[str]:
    out = []
    if np.all(diverged):
        out.append("every chain diverged: no estimate. Lower step_size (or raise localization).")
        return out
    if diverged.any():
        out.append(f"{int(diverged.sum())} of {diverged.size} chains diverged and are left out.")
    worst = np.nanmax(rhat) if np.isfinite(rhat).any() else np.nan
    if worst > 1.05:
        out.append(f"R-hat of the {what} up to {worst:.3f} (> 1.05): the chains disagree; run more burn-in/draws.")
    low = np.nanmin(ess) if np.isfinite(ess).any() else np.nan
    if low < 100:
        out.append(
            f"bulk ESS of the {what} as low as {low:.0f} (< 100): the covariances and their MCSE are unreliable."
        )
    return out


# ------------------------------------------------------------------------------------------------ BIF
@dataclasses.dataclass
class BIFResult(Result):
    """Result of :func:`bif`. Q = probe entries (P examples, or P·T when the probe loss is per token); C = chains,
    D = kept draws.

    Attributes:
        covariance: (Q, Q) posterior covariance :math:`\\mathrm{Cov}(\\ell_i, \\ell_j)` of the probe losses, pooled
            over the kept draws of the chains that did not diverge.
        covariance_mcse: (Q, Q) its batch-means Monte-Carlo standard error (module docstring).
        correlation: (Q, Q) the covariance scaled to unit diagonal.
        influence: (Q, Q) :math:`-\\beta\\,\\mathrm{Cov}(\\ell_i, \\ell_j)`, β = nβ/n: the BIF (see the module
            docstring for the convention and its source).
        mean_loss: (Q,) posterior mean of each probe loss; loss_at_center: (Q,) the probe losses at w*.
        probe_losses: (C, D, Q) the kept draws of the probe losses.
        probe_shape: shape of one draw of the probe losses ((P,) or (P, T)) before flattening to Q.
        rhat, ess: (Q,) R-hat and bulk ESS of each probe loss (the first 256; NaN beyond).
        diverged, divergence_step: per chain.
        nbeta, localization, step_size, batch_size, num_data, sampler, num_batches, thin: the settings.
        warnings: findings (divergence, R-hat, ESS, ``step_size="auto"``'s note).
        auto, localization_choice: with ``step_size="auto"`` / ``localization="auto"``, how they were chosen.
        wall_time: seconds of the sampling run (plus the auto stages).
    """

    covariance: np.ndarray
    covariance_mcse: np.ndarray
    mean_loss: np.ndarray
    loss_at_center: np.ndarray
    probe_losses: np.ndarray
    probe_shape: tuple
    nbeta: float
    localization: float
    step_size: float
    batch_size: int
    num_data: int
    sampler: str
    num_batches: int
    thin: int
    diverged: np.ndarray
    divergence_step: np.ndarray
    wall_time: float
    notes: list = dataclasses.field(default_factory=list)
    auto: Any = dataclasses.field(default=None, repr=False)
    localization_choice: Any = dataclasses.field(default=None, repr=False)

    @property
    def correlation(self) -> np.ndarray:
        return _correlation(self.covariance)

    @property
    def influence(self) -> np.ndarray:
        return -(self.nbeta / self.num_data) * self.covariance

    @property
    def influence_mcse(self) -> np.ndarray:
        return (self.nbeta / self.num_data) * self.covariance_mcse

    @functools.cached_property
    def _diagnostics(self):
        return _per_entry_diagnostics(self.probe_losses, ~np.asarray(self.diverged, bool))

    @property
    def rhat(self) -> np.ndarray:
        return self._diagnostics[0]

    @property
    def ess(self) -> np.ndarray:
        return self._diagnostics[1]

    @property
    def warnings(self) -> list[str]:
        return _health_warnings(self.rhat, self.ess, np.asarray(self.diverged, bool), "probe losses") + list(self.notes)

    def summary(self) -> str:
        q = self.covariance.shape[0]
        rel = np.abs(self.covariance_mcse) / np.maximum(np.abs(self.covariance), 1e-300)
        lines = [
            f"BIF over {q} probe entries (shape {tuple(self.probe_shape)}), {self.probe_losses.shape[0]} chains × "
            f"{self.probe_losses.shape[1]} draws",
            f"{self.sampler}, ε = {self.step_size:.3g}, nβ = {self.nbeta:.4g}, γ = {self.localization:.3g}, "
            f"batch {self.batch_size} of n = {self.num_data}",
            f"Var(ℓ_i): median {np.median(np.diag(self.covariance)):.3g}; median relative MCSE of the variances "
            f"{np.nanmedian(np.diag(rel)):.2g}",
            f"max R-hat {np.nanmax(self.rhat):.3f}, min ESS {np.nanmin(self.ess):.0f}",
        ]
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def plot(self, ax=None, *, cmap: str = "RdBu_r"):
        """A heatmap of ``correlation`` (probe entry × probe entry, scale −1 to 1). Draws into ``ax`` when given
        (its figure is returned); otherwise makes a new figure. Nothing is shown or closed."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 4))
        else:
            fig = ax.figure
        image = ax.imshow(self.correlation, cmap=cmap, vmin=-1, vmax=1)
        ax.set_xlabel("probe entry j")
        ax.set_ylabel("probe entry i")
        ax.set_title("posterior correlation of the probe losses")
        fig.colorbar(image, ax=ax)
        return fig


def bif(
    model_or_loss,
    *args,
    key,
    probe_data,
    step_size,
    probe_loss: Callable | None = None,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_burnin: int | None = None,
    batch_size: int | None = None,
    nbeta: float | None = None,
    localization: float = 1.0,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    thin: int = 1,
    num_batches: int = DEFAULT_NUM_BATCHES,
    progress: bool = False,
    chunk_size: int = 1024,
    precision: float = 0.02,
    bias_tolerance: float = BIAS_TOLERANCE,
    time_budget: float = 120.0,
    store=None,
    mesh=None,
    chain_batch_size: int | None = None,
    steps_per_chunk: int | None = None,
) -> BIFResult:
    r"""The Bayesian influence function of a probe set: the posterior covariance of its per-sample losses.

    One sampling run (the engine's :func:`slt.sample`, as in :func:`slt.estimate_llc`: same call forms, same
    settings) records the loss of every probe example at every kept draw
    (:func:`slt.observables.per_sample_loss`); the result is their pooled covariance, its batch-means MCSE and
    :math:`\mathrm{BIF}_{ij} = -\beta\,\mathrm{Cov}(\ell_i, \ell_j)` with β = nβ/n (module docstring; Kreer et
    al., arXiv 2509.26544).

    Args:
        model_or_loss, args, loss, where: as in :func:`slt.estimate_llc`.
        key: a ``jax.random.key``.
        probe_data: the probe examples, a pytree shaped like the training data with leading axis P.
        step_size: ε, or ``"auto"`` (:func:`slt.estimate_llc`'s four stages, which also size ``num_burnin`` /
            ``num_draws`` where they are None, from the mixing of λ̂, not of the probe losses). The covariances
            are quadratic in the posterior covariance, so SGLD's step bias (≈ εc/4 on the variance along a
            direction of curvature c) reaches them up to twice: +12% at εc ≈ 0.4 on the Gaussian benchmark
            (``benchmarks/RESULTS.md``), where λ̂ is off by half that. ``sampler="mala"`` is exact where full
            batches are affordable.
        probe_loss: optional ``probe_loss(params, probe_batch) -> (B,) or (B, T)``, per-example or per-token losses
            (params in the user's form: the parameter pytree, the merged NNX module, the linen variables). Default:
            the training loss on each probe example alone, shape (P,). A per-token loss gives (P, T) per draw;
            the covariance is then over the P·T flattened entries (row-major: example, then token).
        num_chains, num_draws, num_burnin, batch_size, nbeta, localization, sampler, sampler_params, thin,
        progress, chunk_size, precision, bias_tolerance, time_budget, store, mesh, chain_batch_size,
        steps_per_chunk: as in :func:`slt.estimate_llc` (``localization`` may be ``"auto"``).
        num_batches: batches per chain for the batch-means MCSE.

    Returns:
        :class:`BIFResult`.

    Raises:
        ValueError: bad arguments, a probe set unlike the data, or a non-finite probe loss at w*.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> x, y = p.data
        >>> res = slt.bif(p.loss_fn, p.params, p.data, key=jax.random.key(0), probe_data=(x[:3], y[:3]),
        ...               step_size=2e-3, num_draws=2000, num_burnin=500, batch_size=200)
        >>> res.covariance.shape, res.influence.shape, bool(np.all(np.diag(res.covariance) > 0))
        ((3, 3), (3, 3), True)
        >>> bool(np.allclose(np.diag(res.correlation), 1.0))
        True
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    _check_like_data(probe_data, target.data, "probe_data")
    probe = _probe_observable(probe_data, probe_loss, "probe_data")
    at_center = _at_center(target, probe)
    p = jax.tree_util.tree_leaves(probe_data)[0].shape[0]
    if at_center.ndim == 0 or at_center.shape[0] != p:
        raise ValueError(
            f"the probe loss must return one value per probe example (shape ({p},) or ({p}, T)); got {at_center.shape}."
        )
    if not np.all(np.isfinite(at_center)):
        raise ValueError("the probe loss at w* is not finite on some probe examples: check `probe_data`.")
    num_batches = validate.positive_int(num_batches, "num_batches")
    sampled = _prepare_and_sample(
        target,
        key,
        {"probe": probe},
        estimator="bif",
        thin=thin,
        num_batches=num_batches,
        chain_batch_size=chain_batch_size,
        mesh=mesh,
        store=store,
        progress=progress,
        steps_per_chunk=steps_per_chunk,
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
    )
    records, diverged = sampled.records, sampled.diverged
    trace = records["probe"].reshape(records["probe"].shape[:2] + (-1,))
    healthy = ~diverged
    q = trace.shape[2]
    if healthy.any():
        cov, mcse = cross_covariance(trace[healthy], trace[healthy], num_batches)
        mean = trace[healthy].mean(axis=(0, 1))
    else:
        cov = mcse = np.full((q, q), np.nan)
        mean = np.full(q, np.nan)
    return BIFResult(
        covariance=cov,
        covariance_mcse=mcse,
        mean_loss=mean,
        loss_at_center=at_center.reshape(-1).astype(np.float64),
        probe_losses=trace,
        probe_shape=tuple(at_center.shape),
        **sampled.common,
    )


# ------------------------------------------------------------------------------------- susceptibilities
@dataclasses.dataclass
class SusceptibilityResult(Result):
    """Result of :func:`susceptibilities`. K = components, Q = probes.

    Attributes:
        chi: (K, Q) :math:`\\chi_{C,q} = -\\mathrm{Cov}(\\varphi_C, n\\beta[L_q - L_{\\mathrm{ref}}])` (module
            docstring for the definition and sign).
        chi_mcse: (K, Q) its batch-means Monte-Carlo standard error.
        components, probes: the names, in the order of the rows and columns of ``chi``.
        contributions: probe name -> (K, N_q) signed per-example (per-token: N_q = P·T) contributions, summing
            over N_q to that probe's column of ``chi``.
        phi: (C, D, K) kept draws of :math:`\\varphi_C(w) = L_{\\mathrm{ref}}(w_C, w^*_{\\neg C})`.
        reference_loss: (C, D) kept draws of :math:`L_{\\mathrm{ref}}(w)`.
        probe_loss: (C, D, Q) kept draws of the mean loss :math:`L_q(w)` of each probe set.
        phi_at_center: (K,) :math:`L_{\\mathrm{ref}}(w^*)` (the same for every component).
        rhat, ess: (K,) R-hat and bulk ESS of each φ_C trace.
        diverged, divergence_step, nbeta, localization, step_size, batch_size, num_data, sampler, num_batches,
        thin, wall_time, notes, auto, localization_choice: as in :class:`BIFResult`.
    """

    chi: np.ndarray
    chi_mcse: np.ndarray
    components: tuple
    probes: tuple
    contributions: dict
    phi: np.ndarray
    reference_loss: np.ndarray
    probe_loss: np.ndarray
    phi_at_center: np.ndarray
    nbeta: float
    localization: float
    step_size: float
    batch_size: int
    num_data: int
    sampler: str
    num_batches: int
    thin: int
    diverged: np.ndarray
    divergence_step: np.ndarray
    wall_time: float
    notes: list = dataclasses.field(default_factory=list)
    auto: Any = dataclasses.field(default=None, repr=False)
    localization_choice: Any = dataclasses.field(default=None, repr=False)

    @functools.cached_property
    def _diagnostics(self):
        return _per_entry_diagnostics(self.phi, ~np.asarray(self.diverged, bool))

    @property
    def rhat(self) -> np.ndarray:
        return self._diagnostics[0]

    @property
    def ess(self) -> np.ndarray:
        return self._diagnostics[1]

    @property
    def warnings(self) -> list[str]:
        return _health_warnings(self.rhat, self.ess, np.asarray(self.diverged, bool), "component observables") + list(
            self.notes
        )

    def summary(self) -> str:
        width = max(len(c) for c in self.components)
        lines = [
            f"susceptibilities χ (± MCSE), nβ = {self.nbeta:.4g}, γ = {self.localization:.3g}, ε = {self.step_size:.3g}"
        ]
        lines.append(" " * width + "  " + "  ".join(f"{q:>20}" for q in self.probes))
        for k, c in enumerate(self.components):
            cells = "  ".join(
                f"{self.chi[k, j]:>+11.3g} ± {self.chi_mcse[k, j]:<6.2g}" for j in range(len(self.probes))
            )
            lines.append(f"{c:>{width}}  {cells}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def plot(self, ax=None, *, cmap: str = "RdBu_r", annotate: bool = True):
        """A heatmap of χ (components × probes), colour scale symmetric about 0; entries whose |χ| is under 2 MCSE
        are hatched. Draws into ``ax`` when given (its figure is returned); otherwise makes a new figure. Nothing
        is shown or closed."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        if ax is None:
            k, q = self.chi.shape
            fig, ax = plt.subplots(figsize=(1.6 + 1.1 * q, 1.0 + 0.5 * k))
        else:
            fig = ax.figure
        lim = float(np.nanmax(np.abs(self.chi))) if np.isfinite(self.chi).any() else 1.0
        image = ax.imshow(self.chi, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(self.probes)), self.probes, rotation=45, ha="right")
        ax.set_yticks(range(len(self.components)), self.components)
        ax.set_xlabel("probe")
        ax.set_ylabel("component")
        ax.set_title("susceptibility χ")
        for (i, j), value in np.ndenumerate(self.chi):
            if not np.abs(value) >= 2 * self.chi_mcse[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", lw=0, alpha=0.5))
            if annotate:
                ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax)
        return fig


def susceptibilities(
    model_or_loss,
    *args,
    key,
    components: Mapping[str, Any],
    probes: Mapping[str, PyTree],
    step_size,
    reference_data: PyTree | None = None,
    probe_loss: Callable | None = None,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_burnin: int | None = None,
    batch_size: int | None = None,
    nbeta: float | None = None,
    localization: float = 1.0,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    thin: int = 1,
    num_batches: int = DEFAULT_NUM_BATCHES,
    progress: bool = False,
    chunk_size: int = 1024,
    precision: float = 0.02,
    bias_tolerance: float = BIAS_TOLERANCE,
    time_budget: float = 120.0,
    store=None,
    mesh=None,
    chain_batch_size: int | None = None,
    steps_per_chunk: int | None = None,
) -> SusceptibilityResult:
    r"""The component × probe susceptibility matrix :math:`\chi_{C,q} = -\mathrm{Cov}(\varphi_C,
    n\beta[L_q - L_{\mathrm{ref}}])` (Baker et al., arXiv 2504.18274; module docstring), from one run.

    At every kept draw the run records, on device: :math:`\varphi_C(w) = L_{\mathrm{ref}}(w_C, w^*_{\neg C})` for
    each component (one loss evaluation on the reference set each), :math:`L_{\mathrm{ref}}(w)`, and the
    per-example losses of every probe set. χ is the pooled covariance of φ_C with :math:`-n\beta(L_q -
    L_{\mathrm{ref}})`; the per-example terms give ``contributions``.

    Args:
        model_or_loss, args, loss, where: as in :func:`slt.estimate_llc`.
        key: a ``jax.random.key``.
        components: name -> selector of whole parameter leaves: a path predicate ``(path, leaf) -> bool`` for
            loss functions and linen (``path`` a tuple of names, as for ``where``), an NNX filter for NNX models.
            Each must select at least one moving leaf. A selector may also return a boolean array of a leaf's
            shape for part of that leaf (e.g. the head selectors of ``slt.components``): only those entries are
            taken from the draw.
        probes: name -> probe data set (a pytree shaped like the training data), the distribution *q* the data
            is shifted toward.
        step_size: ε or ``"auto"``.
        reference_data: where φ_C and :math:`L_{\mathrm{ref}}` are evaluated (the "training distribution" of
            the perturbation); default the training data. Each recorded draw costs K + 1 loss evaluations on it:
            pass a subset (or ``thin``) for large data.
        probe_loss: optional ``probe_loss(params, batch) -> (B,) or (B, T)`` per-example or per-token losses
            (see :func:`bif`); :math:`L_q` is their mean.
        num_batches: batches per chain for the batch-means MCSE.
        Other settings: as in :func:`slt.estimate_llc` (``localization`` may be ``"auto"``).

    Returns:
        :class:`SusceptibilityResult` (``.plot()`` draws the matrix).

    Raises:
        ValueError: bad ``components`` or ``probes`` (named), or bad settings.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> x, y = p.data
        >>> loss_fn = lambda params, b: slt.models.regression.linreg_loss(params["w"], b)
        >>> res = slt.susceptibilities(loss_fn, {"w": p.params}, p.data, key=jax.random.key(0),
        ...     components={"w": lambda path, leaf: path == ("w",)}, probes={"big_x": (3 * x[:20], y[:20])},
        ...     step_size=2e-3, num_draws=1000, num_burnin=500, batch_size=200)
        >>> res.chi.shape, res.contributions["big_x"].shape
        ((1, 1), (1, 20))
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    names, masks = _component_masks(target, components)
    if not isinstance(probes, Mapping) or not probes:
        raise ValueError(f"`probes` must be a non-empty dict name -> probe data set; got {type(probes).__name__}.")
    reference = target.data if reference_data is None else reference_data
    _check_like_data(reference, target.data, "reference_data")
    observables = {"components": Observable(_ComponentLosses(masks), data=reference, description="φ_C and L_ref")}
    sizes = {}
    for i, (name, data) in enumerate(probes.items()):
        if not isinstance(name, str):
            raise ValueError(f"`probes` names must be strings; got {name!r}.")
        _check_like_data(data, target.data, f"probes[{name!r}]")
        obs = _probe_observable(data, probe_loss, f"probes[{name!r}]")
        value = _at_center(target, obs)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"the loss of `probes[{name!r}]` at w* is not finite: check that probe set.")
        sizes[name] = value.size
        observables[f"probe_{i}"] = obs
    phi_center = _at_center(target, observables["components"])
    if not np.all(np.isfinite(phi_center)):
        raise ValueError("the loss on `reference_data` at w* is not finite.")
    num_batches = validate.positive_int(num_batches, "num_batches")
    sampled = _prepare_and_sample(
        target,
        key,
        observables,
        estimator="susceptibilities",
        thin=thin,
        num_batches=num_batches,
        chain_batch_size=chain_batch_size,
        mesh=mesh,
        store=store,
        progress=progress,
        steps_per_chunk=steps_per_chunk,
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
    )
    settings, records, diverged = sampled.settings, sampled.records, sampled.diverged
    phi = records["components"][..., :-1]
    ref = records["components"][..., -1]
    healthy = ~diverged
    nbeta_ = float(settings.nbeta)
    k = len(names)
    chi = np.full((k, len(sizes)), np.nan)
    chi_mcse = np.full_like(chi, np.nan)
    contributions, probe_means = {}, []
    for j, name in enumerate(sizes):
        per_example_trace = records[f"probe_{j}"].reshape(phi.shape[:2] + (-1,))
        probe_means.append(per_example_trace.mean(axis=2))
        if not healthy.any():
            contributions[name] = np.full((k, sizes[name]), np.nan)
            continue
        delta = -nbeta_ * (probe_means[-1] - ref)[..., None]
        cov, mcse = cross_covariance(phi[healthy], delta[healthy], num_batches)
        chi[:, j], chi_mcse[:, j] = cov[:, 0], mcse[:, 0]
        terms = -nbeta_ * (per_example_trace - ref[..., None]) / sizes[name]
        contributions[name] = cross_covariance(phi[healthy], terms[healthy], num_batches=1)[0]
    return SusceptibilityResult(
        chi=chi,
        chi_mcse=chi_mcse,
        components=names,
        probes=tuple(sizes),
        contributions=contributions,
        phi=phi,
        reference_loss=ref,
        probe_loss=np.stack(probe_means, axis=-1),
        phi_at_center=np.asarray(phi_center[:-1], dtype=np.float64),
        **sampled.common,
    )
