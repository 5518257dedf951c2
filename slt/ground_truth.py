r"""Exact ground truth for the LLC: the localized tempered posterior sampled with NUTS.

:func:`nuts_llc` samples

.. math::

    p(w) \propto \exp\big(-U(w)\big), \qquad
    U(w) = n\beta\, L_n(w) + \frac{\gamma}{2}\lVert w - w^*\rVert^2

with the *full-data* loss :math:`L_n` (no minibatches) and the No-U-Turn sampler (Hoffman & Gelman, JMLR 15,
2014), which has a Metropolis correction: its only error is Monte-Carlo error, and it reports it. It returns
the plain estimate :math:`\hat\lambda = n\beta\,(\mathbb E[L_n(w)] - L_n(w^*))` (Lau et al., arXiv 2308.12108,
Def. 3; SCIENCE.md §1) as an :class:`~slt.llc.LLCResult`, directly comparable with :func:`slt.estimate_llc` at
the same nβ and γ. The difference between an SGLD estimate and this value is *sampler error* (step size,
minibatch noise, too few steps); the difference between this value and the learning coefficient λ is the
*finite-nβ effect* of the posterior itself (``benchmarks/nuts_split.py``).

Implementation: one run of the sampling driver (:func:`slt._src.driver.sample`, as every sampling computation
of the package) with the registered full-batch kernel :class:`slt.samplers.NUTS` (blackjax's NUTS transition;
step size by dual averaging and a diagonal or dense mass matrix adapted in Stan's windows *inside* the chain
during its first ``num_burnin`` steps, the run's burn-in) and ``batch_size = n``. The chains are
vmapped (or run one after another: ``chain_method="sequential"``), and a second call with the same loss,
settings and shapes does not compile again (nβ, γ and ``target_accept_prob`` are traced). Only scalars are
recorded per draw, never the d-dimensional samples.

Precision: :math:`n\beta L_n(w)` is large (about n/log n times the loss) and λ̂ is a small difference of
such numbers, so by default the potential and the losses are computed in float64 inside a local
``jax.enable_x64`` context; the global JAX setting (and every other computation of the library) is unchanged.
Floating parameters and data are cast to float64 for the run (exact), so the posterior is that of the same
function of the same numbers, only evaluated more precisely. (nβ, γ and the target acceptance enter the run
as the driver's float32 hyperparameters: nβ is rounded to 24 bits, which changes the temperature by at most
6e-8 relatively, far below any Monte-Carlo error; the potential itself is computed in float64.)

Cost: every leapfrog step evaluates the gradient of :math:`L_n` on the whole data set, and NUTS takes
tens to hundreds of them per draw on singular posteriors. For models whose loss depends on the data only
through a few statistics (linear models with squared error: :math:`X^\top X`, :math:`X^\top Y`), pass
``full_loss``, an exactly equal but cheaper :math:`L_n`; it is checked against the data loss first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from slt._src.driver import sample
from slt._src.validate import as_key
from slt._src.validate import positive_int as _positive_int
from slt.llc import LLCResult, SamplingWarning, summarize
from slt.posterior import resolve_nbeta
from slt.samplers.nuts import NUTS
from slt.targets import check_loss_at_center, make_target

__all__ = ["nuts_llc"]

CHAIN_METHODS = ("vectorized", "sequential")


def _x64(enabled: bool):
    """A context in which JAX creates float64 arrays; the global setting is restored on exit."""
    if not enabled:
        return contextlib.nullcontext()
    if hasattr(jax, "enable_x64"):  # a config context manager (jax 0.10, 0.12)
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older jax

    return enable_x64()


def _to_float64(tree):
    """Cast floating-point array leaves to float64 (integer leaves, e.g. class labels, are left alone)."""

    def cast(x):
        if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, jnp.float64)
        return x

    return jax.tree_util.tree_map(cast, tree)


class _MeanLoss:
    """:math:`L_n` of the flattened parameters: the target's loss on all the data, or ``full_loss``.

    Hashable by value (the loss object, ``full_loss`` and ``rebuild``): it is the loss of the target the driver
    runs, part of its compiled program, so equal problems share one compilation.
    """

    def __init__(self, loss, full_loss, rebuild):
        self.loss, self.full_loss, self.rebuild = loss, full_loss, rebuild

    def __call__(self, position, frozen, data):
        if self.full_loss is None:
            return self.loss(position, frozen, data)
        return self.full_loss(position if self.rebuild is None else self.rebuild(position))

    def _key(self):
        return (self.loss, self.full_loss, self.rebuild)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _MeanLoss) and other._key() == self._key()


def _check_full_loss(mean_loss: _MeanLoss, data_loss: _MeanLoss, position, frozen, data, nbeta: float) -> None:
    """Raise unless ``full_loss`` equals the data loss at w* and at two points around it.

    The criterion is on the potential: nβ·|Δ L_n| must be far below 1 (the posterior density changes by the
    factor exp(nβ·Δ L_n)). The points are fixed (numpy seed 0), so the check does not consume the user's key.
    """
    flat, unravel = ravel_pytree(position)
    tol = 10 * float(jnp.finfo(flat.dtype).eps)  # rounding of the two ways of summing, relative to nβ L_n
    rng = np.random.default_rng(0)
    for scale in (0.0, 1e-2, 0.3):
        pos = unravel(flat + scale * jnp.asarray(rng.standard_normal(flat.shape), flat.dtype))
        a = float(mean_loss(pos, frozen, data))
        b = float(data_loss(pos, frozen, data))
        if not (math.isfinite(a) and abs(nbeta * (a - b)) <= 1e-3 + tol * abs(nbeta * b)):
            where = "at w*" if scale == 0 else f"at w* + Gaussian noise of scale {scale}"
            raise ValueError(
                f"`full_loss` does not equal the mean loss over `data` {where}: full_loss = {a!r}, data loss = "
                f"{b!r} (nβ·difference {nbeta * (a - b):.3g}). It must be the same function L_n(params), "
                "e.g. computed from sufficient statistics of the data."
            )


def _chain_starts(init_position, position, num_chains: int):
    """``init_position`` checked against w*'s structure, with a leading axis of ``num_chains``."""
    want = jax.tree_util.tree_structure(position)
    if jax.tree_util.tree_structure(init_position) != want:
        raise ValueError(
            f"`init_position` must have the moving parameters' structure {want}; got "
            f"{jax.tree_util.tree_structure(init_position)}."
        )
    for start, center in zip(jax.tree_util.tree_leaves(init_position), jax.tree_util.tree_leaves(position)):
        if np.shape(start) != (num_chains,) + np.shape(center):
            raise ValueError(
                f"`init_position` leaves must have shape (num_chains,) + the parameter's shape = "
                f"{(num_chains,) + np.shape(center)}; got {np.shape(start)}."
            )
    return jax.tree_util.tree_map(jnp.asarray, init_position)


def nuts_llc(
    model_or_loss,
    *args,
    key,
    nbeta: float | None = None,
    localization: float = 1.0,
    num_chains: int = 4,
    num_burnin: int = 1000,
    num_draws: int = 1000,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    chain_method: str = "vectorized",
    full_loss: Callable | None = None,
    x64: bool = True,
    loss=None,
    where=None,
    chunk_size: int = 1024,
    init_position=None,
) -> LLCResult:
    r"""λ̂ from the exact localized tempered posterior, sampled with NUTS on the full-data potential.

    Call forms (as :func:`slt.estimate_llc`)::

        nuts_llc(loss_fn, params, data, key=...)                  # loss_fn(params, batch) -> scalar
        nuts_llc(nnx_model, (x, y), loss=slt.losses.gaussian_nll, key=...)
        nuts_llc(linen_module, variables, (x, y), loss=..., key=...)

    The potential is :math:`U(w) = n\beta L_n(w) + \frac\gamma2\lVert w-w^*\rVert^2` over the flattened moving
    parameters (``jax.flatten_util.ravel_pytree``), with :math:`L_n` the loss of the whole data set in one
    call. Every chain starts at w* (or at ``init_position``); NUTS adapts its step size and mass matrix during
    ``num_burnin`` steps, which are discarded (their losses are kept in ``burnin_loss_trace``). The estimate is
    the plain one, :math:`n\beta(\overline{L_n(w)} - L_n(w^*))` over the kept draws: as in every driver run, a
    draw is the position a step starts from (the first kept one is where the warmup ended) and :math:`L_n(w)` is
    evaluated there by the step's own gradient evaluation.

    Args:
        model_or_loss: ``loss_fn(params, batch)`` (batch mean of a per-example NLL) or a Flax model; see
            the call forms.
        key: a ``jax.random.key``. Same key, same result.
        nbeta: :math:`n\beta`; ``None`` means :math:`n/\log n` (Lau et al.), as in :func:`slt.estimate_llc`.
        localization: γ ≥ 0 (γ = 0 only where :math:`e^{-n\beta L_n}` is integrable by itself).
        num_chains: independent chains, all started at w* unless ``init_position`` is given.
        num_burnin: adaptation steps per chain (dual-averaging step size, mass matrix), discarded.
        num_draws: kept draws per chain.
        target_accept_prob: NUTS's target acceptance probability; raise it (0.9–0.99) when divergences
            are reported.
        max_tree_depth: at most :math:`2^{\text{depth}} - 1` leapfrog steps per draw.
        dense_mass: adapt a dense mass matrix instead of a diagonal one (d × d: only for small d).
        chain_method: ``"vectorized"`` (all chains in one ``vmap``: each step waits for the longest tree,
            but shares the work; best for small models on CPU) or ``"sequential"`` (one chain after another:
            the driver's ``chain_batch_size=1``; the same random numbers, but batched and unbatched arithmetic
            round differently, and NUTS's discrete choices let the chains drift apart).
        full_loss: optional ``full_loss(params) -> L_n(params)``, an exactly equal but cheaper form of the
            mean loss over ``data`` (e.g. from sufficient statistics), called with the parameters in the
            form ``loss_fn`` takes them. It is checked against the data loss at w* and at perturbed points,
            then replaces it in the potential. Only for the ``loss_fn`` call form.
        x64: compute in float64 inside a local ``jax.enable_x64`` context (default). ``False`` runs in the
            dtype of the parameters.
        loss, where: as in :func:`slt.estimate_llc` (output loss for model forms; which parameters move).
        chunk_size: examples per chunk when checking the loss at w* (as in :func:`slt.estimate_llc`).

    Returns:
        :class:`~slt.llc.LLCResult` with ``sampler="nuts"``, ``estimator="plain"``, ``batch_size = n``,
        ``num_burnin`` (the adaptation steps are the burn-in), ``step_size`` the mean over chains
        of NUTS's adapted step size, ``loss_trace`` the full-data loss of every kept draw,
        ``loss_at_center_trace`` filled with :math:`L_n(w^*)` (``init_loss``, computed in the same precision
        as the draws), and ``sampler_stats`` with per-draw ``accept_prob`` (NUTS's mean acceptance
        statistic over the tree, which the step-size adaptation drives to ``target_accept_prob``; not a
        Metropolis acceptance rate, so it is not reported as ``acceptance_rate``), ``tree_depth``,
        ``num_steps`` (leapfrog steps), ``diverging`` and ``step_size``. Divergent transitions among the
        kept draws, and trees that hit ``max_tree_depth``, are listed in ``warnings`` and raised as a
        :class:`~slt.llc.SamplingWarning`: a divergence means the sampler could not resolve part of the
        posterior (often the neighbourhood of a singularity), so λ̂ may be biased.

    Raises:
        ValueError: bad arguments (the message names the argument), or a loss that is not finite at w*.

    Example:
        >>> import jax, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)   # regular: E_β λ̂ close to d/2 = 1
        >>> res = slt.ground_truth.nuts_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), num_chains=2,
        ...                                 num_burnin=200, num_draws=300)
        >>> res.sampler, res.llc_trace.shape, bool(abs(res.llc_mean - 1.0) < 0.3)
        ('nuts', (2, 300), True)
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    nbeta = resolve_nbeta(nbeta, target.num_data)
    try:
        gamma = float(localization)
    except (TypeError, ValueError):
        gamma = float("nan")
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"`localization` (γ) must be a finite number >= 0; got {localization!r}.")
    num_chains = _positive_int(num_chains, "num_chains")
    num_burnin = _positive_int(num_burnin, "num_burnin")
    num_draws = _positive_int(num_draws, "num_draws")
    max_tree_depth = _positive_int(max_tree_depth, "max_tree_depth")
    chunk_size = _positive_int(chunk_size, "chunk_size")
    try:
        target_accept = float(target_accept_prob)
    except (TypeError, ValueError):
        target_accept = float("nan")
    if not 0 < target_accept < 1:
        raise ValueError(f"`target_accept_prob` must be in (0, 1); got {target_accept_prob!r}.")
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"`chain_method` must be one of {CHAIN_METHODS}; got {chain_method!r}.")
    if full_loss is not None:
        if not callable(full_loss):
            raise ValueError(f"`full_loss` must be callable as full_loss(params) -> scalar; got {type(full_loss)}.")
        if loss is not None:
            raise ValueError("`full_loss` is only for the loss_fn(params, batch) call form, not for models.")
    per_example = check_loss_at_center(target, chunk_size)  # a finite scalar batch mean at w*, as estimate_llc checks

    data_loss = _MeanLoss(target.loss, None, None)
    mean_loss = data_loss if full_loss is None else _MeanLoss(target.loss, full_loss, target.rebuild)
    cast = _to_float64 if x64 else (lambda tree: tree)
    sampler = NUTS(num_warmup=num_burnin, max_tree_depth=max_tree_depth, dense_mass=bool(dense_mass))
    with _x64(x64):
        position, frozen, data = cast(target.position), cast(target.frozen), cast(target.data)
        if full_loss is not None:
            _check_full_loss(mean_loss, data_loss, position, frozen, data, nbeta)
        loss_at_center = float(jax.jit(mean_loss)(position, frozen, data))
        if not math.isfinite(loss_at_center):
            raise ValueError(f"the full-data loss at w* is not finite ({loss_at_center}); check `params` and data.")
        run = sample(
            dataclasses.replace(target, loss=mean_loss, position=position, frozen=frozen, data=data),
            key=key,
            example_losses_at_center=per_example,
            nbeta=nbeta,
            localization=gamma,
            num_chains=num_chains,
            num_steps=num_burnin + num_draws,
            batch_size=target.num_data,  # the whole data set every step
            sampler=sampler,
            sampler_params={"target_accept_prob": target_accept},
            thin=1,
            chain_batch_size=1 if chain_method == "sequential" else None,
            init_position=None if init_position is None else cast(_chain_starts(init_position, position, num_chains)),
            description="nuts_llc",
        )
    records = dict(run.stats)
    wall_time = run.wall_time

    losses = records.pop("loss").astype(np.float64)
    records["tree_depth"] = np.floor(np.log2(np.maximum(records["num_steps"], 1))).astype(np.int64) + 1
    step_sizes = records["step_size"][:, -1].astype(np.float64)
    result = summarize(
        losses,
        np.full_like(losses, loss_at_center),
        num_burnin=num_burnin,
        init_loss=loss_at_center,
        nbeta=nbeta,
        estimator="plain",
        info=records,
        divergence_step=run.divergence_step,
        num_params=target.num_parameters,
        localization=gamma,
        step_size=float(np.mean(step_sizes)),
        batch_size=target.num_data,
        num_data=target.num_data,
        sampler="nuts",
        wall_time=wall_time,
        sampler_params={
            "num_burnin": num_burnin,
            "target_accept_prob": target_accept,
            "max_tree_depth": max_tree_depth,
            "dense_mass": float(bool(dense_mass)),
        },
    )
    _report_nuts_health(result, max_tree_depth)
    return result


def _report_nuts_health(result: LLCResult, max_tree_depth: int) -> None:
    """Add NUTS's own findings (divergent transitions, saturated trees) to ``result.warnings`` and warn."""
    found = []
    diverging = np.asarray(result.sampler_stats["diverging"], bool)
    per_chain = diverging.sum(axis=1)
    if per_chain.any():
        chains = ", ".join(f"chain {c}: {k}" for c, k in enumerate(per_chain) if k)
        found.append(
            f"NUTS had {int(per_chain.sum())} divergent transitions in {diverging.size} kept draws ({chains}): "
            "part of the posterior (often the neighbourhood of a singularity) was not resolved at the adapted "
            "step size, so λ̂ may be biased. Raise target_accept_prob (e.g. 0.95 or 0.99)."
        )
    saturated = np.asarray(result.sampler_stats["num_steps"]) >= 2**max_tree_depth - 1
    if saturated.mean() > 0.01:
        found.append(
            f"{saturated.mean():.0%} of the kept draws hit max_tree_depth = {max_tree_depth} (trajectories cut "
            "short): the chains mix more slowly than the draw count suggests. Raise max_tree_depth."
        )
    accept = float(np.mean(result.sampler_stats["accept_prob"]))
    target_accept = result.sampler_params["target_accept_prob"]
    if accept < target_accept - 0.15:
        found.append(
            f"NUTS's mean acceptance statistic is {accept:.2f}, far below its target {target_accept:g}: the "
            "step-size adaptation did not settle. Raise num_burnin."
        )
    if found:
        result.notes.extend(found)
        warnings.warn(" ".join(found), SamplingWarning, stacklevel=3)
