r"""Observables: what a sampling run records at each kept draw, computed on device inside the scan.

An observable is evaluated at the position :math:`w_t` a step starts from, on that step's minibatch
:math:`B_t`. ``observables={"name": spec}`` takes, for each name, either

* a function ``fn(params, batch) -> array`` of any fixed shape (``params`` in the user's form: the parameter
  pytree of a loss function, the merged ``nnx.Module`` of an NNX model, the variables of a linen module), or
* a built-in by name: ``"loss"`` (:math:`L_{B_t}(w_t)`, free: it comes out of the gradient evaluation),
  ``"loss_at_center"`` (:math:`L_{B_t}(w^*)` on the same minibatch, read from the per-example losses at w*:
  the paired LLC estimator of Lau et al., arXiv 2308.12108, is a reduction of these two), ``"weight_norm"``
  (:math:`\lVert w_t\rVert_2` over the moving parameters), ``"group_norms"`` (:math:`\lVert\cdot\rVert_2` per
  top-level parameter group), ``"distance"`` (:math:`\lVert w_t - w^*\rVert_2`), ``"grad_norm"``
  (:math:`\lVert\nabla L_{B_t}(w_t)\rVert_2`, one more backward pass per recorded draw), or
* :func:`per_sample_loss` ``(probe)``: the loss of every example of a fixed probe set, shape ``(P,)`` (the
  input of Bayesian influence functions and susceptibilities; Kreer et al., arXiv 2509.26544), or
* :func:`subset_losses` ``(subsets)``: the mean loss :math:`L_S(w_t)` on each of K data sets, shape ``(K,)``
  (the data-restricted LLC of Wang et al., arXiv 2410.02984; ``estimate_llc(..., eval_data=...)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Observable", "DrawContext", "per_sample_loss", "subset_losses", "resolve", "BUILTIN"]

PyTree = Any


class DrawContext(NamedTuple):
    """What an observable sees at one draw of one chain (all traced).

    Example:
        >>> import jax.numpy as jnp
        >>> from slt.observables import BUILTIN, DrawContext
        >>> def loss(position, frozen, batch):
        ...     return 0.5 * jnp.sum(position**2)
        >>> ctx = DrawContext(position=jnp.array([3.0, 4.0]), frozen=(), center=jnp.zeros(2), batch=None,
        ...                   loss=jnp.float32(12.5), loss_at_center=jnp.float32(0.0), target_loss=loss)
        >>> float(BUILTIN["distance"](ctx, None)), float(BUILTIN["grad_norm"](ctx, None))
        (5.0, 5.0)
        >>> ctx.params.tolist()  # a plain loss function's parameters are the position
        [3.0, 4.0]
    """

    position: PyTree  # w_t, the moving parameters
    frozen: PyTree
    center: PyTree  # w*
    batch: PyTree  # B_t
    loss: jax.Array  # L_B(w_t)
    loss_at_center: jax.Array  # L_B(w*)
    target_loss: Callable  # loss(position, frozen, batch)

    @property
    def params(self) -> PyTree:
        """The parameters in the user's form (see :meth:`slt.targets.Target.params`)."""
        merge = getattr(self.target_loss, "params", None)
        return self.position if merge is None else merge(self.position, self.frozen)


@dataclasses.dataclass(frozen=True)
class Observable:
    """``fn(ctx, data) -> array``, evaluated per draw; ``data`` (a pytree of arrays, e.g. a probe set) is passed
    to the compiled run as an argument, not baked in, so a new probe set of the same shape does not recompile.
    ``fn`` must be hashable (a function is; a new lambda at each call compiles again).

    Example:
        >>> import jax.numpy as jnp
        >>> from slt.observables import DrawContext, Observable
        >>> def max_shift(ctx, data):  # the largest coordinate move away from w*
        ...     return jnp.max(jnp.abs(ctx.position - ctx.center))
        >>> shift = Observable(max_shift, description="max |w - w*|")  # observables={"shift": shift} in a run
        >>> ctx = DrawContext(jnp.array([1.0, -3.0]), (), jnp.zeros(2), None, jnp.float32(0), jnp.float32(0), None)
        >>> float(shift(ctx, shift.data))
        3.0
    """

    fn: Callable[[DrawContext, Any], jax.Array]
    data: Any = None
    description: str = ""

    def __call__(self, ctx: DrawContext, data) -> jax.Array:
        return self.fn(ctx, data)


def _sq_norm(tree) -> jax.Array:
    return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree_util.tree_leaves(tree))


def _loss(ctx, data):
    return ctx.loss


def _loss_at_center(ctx, data):
    return ctx.loss_at_center


def _weight_norm(ctx, data):
    return jnp.sqrt(_sq_norm(ctx.position))


def _distance(ctx, data):
    return jnp.sqrt(_sq_norm(jax.tree_util.tree_map(lambda w, c: w - c, ctx.position, ctx.center)))


def _grad_norm(ctx, data):
    grad = jax.grad(ctx.target_loss)(ctx.position, ctx.frozen, ctx.batch)
    return jnp.sqrt(_sq_norm(grad))


def group_names(position: PyTree) -> list[str]:
    """Names of the top-level groups of a parameter pytree (the labels of ``"group_norms"``).

    Example:
        >>> import jax.numpy as jnp
        >>> from slt.observables import group_names
        >>> group_names({"head": jnp.ones(2), "dense": {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}})
        ['dense', 'head']
        >>> group_names([jnp.ones(2), jnp.ones(3)])  # a list's groups are its indices
        ['0', '1']
    """
    from slt.targets import path_names

    names: list[str] = []
    for path, _ in jax.tree_util.tree_flatten_with_path(position)[0]:
        parts = path_names(path)
        name = str(parts[0]) if parts else "<root>"
        if name not in names:
            names.append(name)
    return names


def _group_norms(ctx, data):
    from slt.targets import path_names

    groups: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(ctx.position)[0]:
        parts = path_names(path)
        name = str(parts[0]) if parts else "<root>"
        groups[name] = groups.get(name, 0.0) + jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    return jnp.sqrt(jnp.stack(list(groups.values())))


def _per_sample_loss(ctx, probe):
    def one(example):
        batch = jax.tree_util.tree_map(lambda x: x[None], example)
        return ctx.target_loss(ctx.position, ctx.frozen, batch)

    return jax.vmap(one)(probe)


@dataclasses.dataclass(frozen=True)
class _UserObservable:
    fn: Callable

    def __call__(self, ctx, data):
        return self.fn(ctx.params, ctx.batch)


BUILTIN: dict[str, Observable] = {
    "loss": Observable(_loss, description="L_B(w_t)"),
    "loss_at_center": Observable(_loss_at_center, description="L_B(w*) on the same minibatch"),
    "weight_norm": Observable(_weight_norm, description="||w_t||_2 of the moving parameters"),
    "group_norms": Observable(_group_norms, description="||.||_2 per top-level parameter group"),
    "distance": Observable(_distance, description="||w_t - w*||_2"),
    "grad_norm": Observable(_grad_norm, description="||grad L_B(w_t)||_2"),
}


def per_sample_loss(probe: PyTree) -> Observable:
    """The loss of each example of ``probe`` (a pytree shaped like the data, leading axis P) at every draw:
    an observable of shape ``(P,)``. For a per-token loss returning one value per token, shape ``(P, T)``.

    Example:
        >>> import slt
        >>> from slt.observables import DrawContext, per_sample_loss
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> x, y = p.data
        >>> probe = per_sample_loss((x[:5], y[:5]))  # observables={"probe": probe} in a run: (C, D, 5)
        >>> target = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data)
        >>> ctx = DrawContext(target.position, target.frozen, target.position, None, None, None, target.loss)
        >>> probe(ctx, probe.data).shape
        (5,)
    """
    from slt.targets import check_data

    check_data(probe, "probe")
    return Observable(_per_sample_loss, data=probe, description="per-example loss on a probe set")


def _subset_losses(ctx, data):
    padded, weights = data  # leaves (K·M, ...); weights (K, M): 1/m_k on the k-th set's examples, 0 on padding

    def one(example):
        batch = jax.tree_util.tree_map(lambda x: x[None], example)
        return ctx.target_loss(ctx.position, ctx.frozen, batch)

    total = weights.size
    losses = jax.lax.map(one, padded, batch_size=min(total, 1024))
    return jnp.sum(weights * losses.reshape(weights.shape).astype(weights.dtype), axis=1)


def subset_losses(subsets) -> Observable:
    r"""The mean loss on each of K data sets at every draw, :math:`(L_{S_1}(w_t), \dots, L_{S_K}(w_t))`: shape
    ``(K,)``, one compiled program for all of them. ``subsets`` is a sequence of data pytrees (each shaped like
    the training data, with its own leading size :math:`m_k`); they are padded to the largest size (with
    copies of their own first example, weighted 0) and stacked, so the loss of each set is a weighted sum over
    one batch of :math:`K \cdot \max_k m_k` per-example losses.

    The data-restricted LLC (Wang et al., arXiv 2410.02984) is
    :math:`\hat\lambda_S = n\beta(\mathbb E_w[L_S(w)] - L_S(w^*))` with w drawn from the posterior of the
    *training* data; :func:`slt.estimate_llc` computes it with ``eval_data={"name": subset}``.

    Example:
        >>> import slt
        >>> from slt.observables import DrawContext, subset_losses
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> x, y = p.data
        >>> sets = subset_losses([(x[:5], y[:5]), (x[5:8], y[5:8])])
        >>> target = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data)
        >>> ctx = DrawContext(target.position, target.frozen, target.position, None, None, None, target.loss)
        >>> values = sets(ctx, sets.data)
        >>> values.shape, bool(abs(values[1] - p.loss_fn(p.params, (x[5:8], y[5:8]))) < 1e-6)
        ((2,), True)
    """
    import numpy as np

    from slt.targets import check_data

    subsets = list(subsets)
    if not subsets:
        raise ValueError("`subsets` is empty: expected one or more data pytrees.")
    sizes = [check_data(s, f"subset {i}") for i, s in enumerate(subsets)]
    structure = jax.tree_util.tree_structure(subsets[0])
    for i, s in enumerate(subsets[1:], 1):
        if jax.tree_util.tree_structure(s) != structure:
            raise ValueError(f"subset {i} has another structure than subset 0: every subset is shaped like the data.")
    width = max(sizes)

    def pad(x, m):
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[:1], width - m, axis=0)]) if m < width else x

    padded = jax.tree_util.tree_map(lambda *xs: np.concatenate([pad(x, m) for x, m in zip(xs, sizes)]), *subsets)
    weights = np.zeros((len(sizes), width), dtype=np.float32)
    for k, m in enumerate(sizes):
        weights[k, :m] = 1.0 / m
    return Observable(_subset_losses, data=(padded, weights), description="mean loss on each of K data sets")


def resolve(observables: Mapping[str, Any] | None) -> tuple[tuple[str, Observable], ...]:
    """Validate ``observables`` (name -> built-in name, :class:`Observable`, or ``fn(params, batch)``)."""
    if observables is None:
        return ()
    if not isinstance(observables, Mapping):
        raise ValueError(
            f"`observables` must be a dict name -> spec (a built-in name, slt.observables.per_sample_loss(probe) "
            f"or fn(params, batch)); got {type(observables).__name__}."
        )
    out = []
    for name, spec in observables.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"`observables` names must be identifiers (they name store arrays); got {name!r}.")
        if isinstance(spec, str):
            if spec == "per_sample_loss":
                raise ValueError(
                    f"observable {name!r}: 'per_sample_loss' needs a probe set: use "
                    "slt.observables.per_sample_loss(probe_data)."
                )
            if spec not in BUILTIN:
                raise ValueError(f"observable {name!r}: unknown built-in {spec!r}; built-ins: {sorted(BUILTIN)}.")
            spec = BUILTIN[spec]
        elif isinstance(spec, Observable):
            pass
        elif callable(spec):
            try:
                hash(spec)
            except TypeError:
                raise ValueError(f"observable {name!r}: the function must be hashable.") from None
            spec = Observable(_UserObservable(spec), description=getattr(spec, "__name__", "user function"))
        else:
            raise ValueError(f"observable {name!r}: expected a built-in name, an Observable or fn(params, batch).")
        out.append((name, spec))
    return tuple(out)
