r"""What is sampled: a pure loss over the moving parameters, the point w*, and the data.

The sampling core never sees Flax. It works on a :class:`Target`: a hashable callable
``loss(position, frozen, batch) -> scalar``, the moving parameters ``position`` (a pytree; this is w*),
the ``frozen`` leaves that are held at their values at w*, and the data (a pytree of arrays sharing a
leading axis of length ``num_data``). Adapters build a target from

* a plain ``loss_fn(params, batch)`` over a parameter pytree (:func:`from_loss_fn`),
* an ``nnx.Module`` and a loss on its outputs (:func:`from_nnx`),
* a linen module with its variables and a loss on its outputs (:func:`from_linen`);

:func:`make_target` picks the adapter from the call form, and :func:`check_loss_at_center` checks that the loss
is a finite batch mean of per-example losses at w* (:func:`per_example_losses`). The model adapters also check,
from shapes alone, that the model's outputs and the targets fit the loss without broadcasting
(:func:`slt.losses.check_shapes`).

Weight restriction (the weight-refined LLC of Wang et al., arXiv 2410.02984) is the choice of which
parameters move: a path predicate ``where(path, leaf)`` for pytrees and linen, any NNX filter for NNX. For
each leaf it returns ``True`` (the whole leaf moves), ``False`` (it stays at w*), or, to restrict to *part* of
an array (one attention head inside a fused qkv kernel, say; :func:`slt.components`), a boolean mask of the
leaf's shape or an index expression (``np.s_[:, 4:8]``) naming the entries that move.

How a sub-array restriction is sampled. The moving position holds only the selected entries: a leaf with a
mask contributes the 1-D array ``leaf.ravel()[idx]`` (``idx``: the mask's flat indices, row-major), and the
loss rebuilds the leaf as ``w*_leaf.ravel().at[idx].set(position)``. ``idx`` is data (it travels with the
frozen leaf), so restrictions of the same size, such as the heads of one layer, share one compiled program.
So the sampled space is exactly the restricted one, :math:`w_S \in \mathbb R^{d_S}` with
:math:`w_{\bar S} = w^*_{\bar S}`, and

.. math:: \hat\lambda_S = n\beta\,\big(\mathbb E_{w_S}[L_n(w_S, w^*_{\bar S})] - L_n(w^*)\big),\qquad
    p(w_S) \propto e^{-n\beta L_n(w_S, w^*_{\bar S}) - \frac\gamma2 \lVert w_S - w^*_S\rVert^2}.

The alternative, a full-leaf position with the loss evaluated at :math:`w^* + m\odot(w - w^*)`, has the
same λ̂ in expectation (the posterior factorizes into the one above times an independent
:math:`\mathcal N(w^*_{\bar S}, \gamma^{-1} I)` in the masked-out coordinates, which the loss never sees, even
at finite step size: SGLD moves them as an Ornstein-Uhlenbeck process of their own), but everything that
reads the position would be wrong: d (``num_parameters``, the d/2 checks of the diagnostics and of
``localization="auto"``), the ``"distance"`` and ``"weight_norm"`` observables, and the drift checks and burn-in
of ``step_size="auto"`` (the masked-out coordinates relax at rate εγ only, the slowest in the problem, and
would be diffusing noise that costs time and nothing else). Gathering the selected entries makes all of these
count the restricted problem, at the cost of one gather and one scatter per loss evaluation.

The loss objects are frozen dataclasses compared by value, so that a second estimate with the same
function and the same model structure reuses the compiled sampler instead of compiling again.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt.losses import check_shapes

__all__ = [
    "Target",
    "check_loss_at_center",
    "from_linen",
    "from_loss_fn",
    "from_nnx",
    "make_target",
    "path_names",
    "per_example_losses",
]

PyTree = Any
PathPredicate = Callable[[tuple, Any], bool]


@dataclasses.dataclass(frozen=True)
class Target:
    """A sampling problem in the form the core understands.

    Attributes:
        loss: hashable ``loss(position, frozen, batch) -> scalar``, the mean negative log-likelihood of a
            batch.
        position: the moving parameters at w* (a pytree of floating arrays).
        frozen: leaves held fixed at their values at w* (any pytree, possibly empty).
        data: pytree of arrays with a common leading axis of length ``num_data``.
        num_data: n, the number of data points.
        rebuild: ``rebuild(position) -> params`` returns the parameters in the user's form (for reading
            samples back); ``None`` when ``position`` already is that form.

    Example:
        >>> import slt
        >>> p = slt.models.deep_linear_network([2, 2, 2], 1, num_data=200, seed=0)
        >>> target = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data)
        >>> target.num_data, target.num_parameters, target.frozen
        (200, 8, ())
        >>> last = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data, where=lambda path, leaf: path == (1,))
        >>> last.num_parameters, len(last.frozen)  # only the second layer moves
        (4, 1)
        >>> float(last.loss(last.position, last.frozen, p.data)) == float(p.loss_fn(p.params, p.data))
        True
        >>> import numpy as np  # a sub-array restriction: the first column of the first layer
        >>> col = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data,
        ...                                where=lambda path, leaf: path == (0,) and np.s_[:, 0])
        >>> col.num_parameters, col.position[0].shape  # the moving entries, gathered
        (2, (2,))
    """

    loss: Callable[[PyTree, PyTree, PyTree], jax.Array]
    position: PyTree
    frozen: PyTree
    data: PyTree
    num_data: int
    rebuild: Callable[[PyTree], PyTree] | None = None

    @property
    def num_parameters(self) -> int:
        """Number of scalar parameters that move (d of the restricted problem: a masked leaf counts its
        selected entries only)."""
        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.position)))


class _ByIdentity:
    """Wraps an unhashable static object (a linen module, say) so that it hashes by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.obj is self.obj


def _static(obj: Any) -> Any:
    try:
        hash(obj)
    except TypeError:
        return _ByIdentity(obj)
    return obj


def _unwrap(obj: Any) -> Any:
    return obj.obj if isinstance(obj, _ByIdentity) else obj


def path_names(path: Sequence[Any]) -> tuple:
    """A JAX key path as a tuple of plain names and indices, e.g. ``('layers', 0, 'kernel')``."""
    out = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                out.append(getattr(entry, attr))
                break
        else:
            out.append(str(entry))
    # NNX variables end their paths with the `value` attribute; it names no parameter.
    if out and out[-1] == "value":
        out.pop()
    return tuple(out)


# ----------------------------------------------------------------------------------------------- checks
def _check_float_leaves(tree: PyTree, argname: str) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    if not leaves:
        raise ValueError(f"`{argname}` has no array leaves: expected a pytree of floating-point arrays.")
    for path, leaf in leaves:
        dtype = jnp.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(
                f"`{argname}` leaf {jax.tree_util.keystr(path)} has dtype {dtype}; every parameter that "
                "moves must be a floating-point array (cast it, or keep it out of the moving set with a "
                "filter)."
            )


def check_data(data: PyTree, argname: str = "data") -> int:
    """Validate a data pytree and return its number of examples n."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"`{argname}` is empty: expected a pytree of arrays with a leading data axis.")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"`{argname}` leaf {jax.tree_util.keystr(path)} is a scalar: every leaf needs a leading "
                "data axis (shape (n, ...))."
            )
        sizes[jax.tree_util.keystr(path) or "<root>"] = shape[0]
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ValueError(
            f"`{argname}` leaves have different leading sizes ({listing}); all leaves must share the leading axis n."
        )
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"`{argname}` has zero examples (leading axis of length 0).")
    for path, leaf in leaves:
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(
                f"`{argname}` leaf {jax.tree_util.keystr(path)} contains {bad} non-finite values (NaN or "
                "inf); clean or drop those examples first."
            )
    return int(n)


# ----------------------------------------------------------------------------------- plain loss functions
@dataclasses.dataclass(frozen=True)
class _FunctionLoss:
    """``loss_fn(params, batch)`` with every parameter leaf moving."""

    loss_fn: Callable

    def __call__(self, position, frozen, batch):
        del frozen
        return _unwrap(self.loss_fn)(position, batch)

    def params(self, position, frozen):
        """The parameters in the user's form."""
        return position


@dataclasses.dataclass(frozen=True)
class _MaskedFunctionLoss:
    """``loss_fn(params, batch)`` where only the leaves marked in ``mask`` move."""

    loss_fn: Callable
    treedef: Any
    mask: tuple[bool, ...]

    def __call__(self, position, frozen, batch):
        return _unwrap(self.loss_fn)(self.params(position, frozen), batch)

    def params(self, position, frozen):
        """The parameters in the user's form."""
        return _merge_leaves(self.treedef, self.mask, position, frozen)


class _Entries:
    """A leaf of which only some entries move: its shape and how many entries move (static, compared by value).
    Which entries is data: the flat row-major indices travel with the frozen leaf (``(leaf, index)`` in
    ``frozen``), so restrictions of the same size (the heads of a layer) share one compiled program."""

    __slots__ = ("shape", "count")

    def __init__(self, shape: tuple, count: int):
        self.shape = tuple(int(s) for s in shape)
        self.count = int(count)

    def __hash__(self) -> int:
        return hash((_Entries, self.shape, self.count))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Entries) and (other.shape, other.count) == (self.shape, self.count)

    def __repr__(self) -> str:
        return f"_Entries({self.count} of the entries of a {self.shape} leaf)"

    @staticmethod
    def index(mask: np.ndarray) -> np.ndarray:
        """The flat indices of a mask's true entries."""
        return np.flatnonzero(mask).astype(np.int32 if mask.size < 2**31 else np.int64)

    @staticmethod
    def gather(leaf, index):
        """The moving entries of ``leaf``, a 1-D array."""
        return jnp.reshape(jnp.asarray(leaf), (-1,))[index]

    def scatter(self, frozen, moving):
        """The leaf: ``frozen = (leaf at w*, index)`` with the entries at ``index`` set to ``moving``."""
        full, index = frozen
        return jnp.reshape(jnp.reshape(jnp.asarray(full), (-1,)).at[index].set(moving), self.shape)


def _merge_leaves(treedef, mask, moving, frozen):
    """The leaves in the user's order: a whole moving leaf (``True``), a frozen one (``False``), or a frozen
    leaf with its moving entries scattered in (:class:`_Entries`)."""
    moving_it, frozen_it = iter(moving), iter(frozen)
    leaves = []
    for m in mask:
        if m is True:
            leaves.append(next(moving_it))
        elif m is False:
            leaves.append(next(frozen_it))
        else:
            leaves.append(m.scatter(next(frozen_it), next(moving_it)))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _leaf_shape(leaf) -> tuple:
    return tuple(np.shape(getattr(leaf, "value", leaf)))


def _selection(result, leaf, names: tuple):
    """What ``where`` returned for one leaf, as ``True`` / ``False`` / ``(_Entries, index)`` (validated)."""
    if isinstance(result, (bool, np.bool_)):
        return bool(result)
    shape = _leaf_shape(leaf)
    where_text = f"`where` for leaf {'.'.join(map(str, names)) or '<root>'} (shape {shape})"
    if isinstance(result, (slice, tuple, type(Ellipsis), int, np.integer)) and not isinstance(result, bool):
        mask = np.zeros(shape, dtype=bool)
        try:
            mask[result] = True
        except (IndexError, TypeError, ValueError) as err:
            raise ValueError(
                f"{where_text} returned the index expression {result!r}, which does not index it: {err}."
            ) from None
    else:
        try:
            mask = np.asarray(result)
        except Exception:  # a traced value, an object numpy cannot read
            mask = None
        if mask is None or mask.dtype != np.bool_:
            raise ValueError(
                f"{where_text} returned {type(result).__name__}"
                + ("" if mask is None else f" of dtype {mask.dtype}")
                + "; expected a bool (the whole leaf moves or not), a boolean mask of the leaf's shape, or an "
                "index expression such as np.s_[:, 0:4] (the entries that move)."
            )
        if mask.shape == ():
            return bool(mask)
        if mask.shape != shape:
            raise ValueError(
                f"{where_text} returned a boolean mask of shape {mask.shape}; a mask must have the leaf's shape."
            )
    if mask.all():
        return True
    if not mask.any():
        return False
    return _Entries(shape, int(mask.sum())), _Entries.index(mask)


def _split_leaves(leaves_with_path, selections):
    """The static mask (``True`` / ``False`` / :class:`_Entries` per leaf) and the moving and frozen leaves for
    the selections of :func:`_selection`; a partly moving leaf is frozen as ``(leaf, index)``."""
    mask, moving, frozen = [], [], []
    for (_, leaf), m in zip(leaves_with_path, selections):
        if m is True:
            moving.append(leaf)
        elif m is False:
            frozen.append(leaf)
        else:
            entries, index = m
            moving.append(_Entries.gather(leaf, index))
            frozen.append((leaf, jnp.asarray(index)))
            m = entries
        mask.append(m)
    return tuple(mask), tuple(moving), tuple(frozen)


def _split_by_predicate(tree: PyTree, where: PathPredicate, argname: str):
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    selections = [_selection(where(path_names(p), leaf), leaf, path_names(p)) for p, leaf in leaves_with_path]
    if not any(m is not False for m in selections):
        raise ValueError(f"`where` selects no leaf of `{argname}`: at least one parameter must move.")
    mask, moving, frozen = _split_leaves(leaves_with_path, selections)
    return moving, frozen, treedef, mask


def from_loss_fn(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    data: PyTree,
    *,
    where: PathPredicate | None = None,
) -> Target:
    """Target for a plain ``loss_fn(params, batch) -> scalar``.

    Args:
        loss_fn: mean negative log-likelihood of a batch (a pytree shaped like ``data`` with a leading
            batch axis).
        params: the point w*, a pytree of floating-point arrays.
        data: pytree of arrays with a common leading axis n.
        where: optional ``where(path, leaf)``; only what it selects moves (the weight-restricted LLC).
            ``path`` is a tuple of names/indices, e.g. ``('layer1', 'w')``. It returns ``True``/``False`` for
            the whole leaf, or a boolean mask of the leaf's shape / an index expression (``np.s_[:, 0:4]``)
            for part of it (see the module docstring); :func:`slt.components` builds such selectors.
    """
    if not callable(loss_fn):
        raise ValueError(f"`loss_fn` must be callable as loss_fn(params, batch); got {type(loss_fn)}.")
    n = check_data(data)
    if where is None:
        _check_float_leaves(params, "params")
        return Target(_FunctionLoss(_static(loss_fn)), params, (), data, n)
    moving, frozen, treedef, mask = _split_by_predicate(params, where, "params")
    _check_float_leaves(moving, "params")
    loss = _MaskedFunctionLoss(_static(loss_fn), treedef, mask)

    def rebuild(position):
        return _merge_leaves(treedef, mask, position, frozen)

    return Target(loss, moving, frozen, data, n, rebuild)


# ------------------------------------------------------------------------------------------------- NNX
def _check_supervised(data: PyTree, argname: str = "data"):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            f"`{argname}` for a model must be a pair (inputs, targets) of arrays with a common leading "
            f"axis; got {type(data).__name__}."
        )
    return tuple(data)


def _outputs_impl(target_loss, position, frozen, inputs):
    return target_loss.outputs(position, frozen, inputs)


# Only its `eval_shape` is used: the model is traced, never compiled nor run, and the trace is cached by the
# (value-compared) loss object and the shapes, so that the targets of many checkpoints trace it once.
_outputs = jax.jit(_outputs_impl, static_argnames=("target_loss",))


def _check_output_shapes(target_loss, position, frozen, data) -> None:
    """Check the model's outputs on the inputs against the targets for the loss (:func:`slt.losses.check_shapes`),
    from their shapes alone (``eval_shape`` on the full inputs: nothing is computed)."""
    inputs, targets = data
    outputs = _outputs.eval_shape(target_loss, position, frozen, inputs)
    check_shapes(_unwrap(target_loss.output_loss), outputs, targets)


@dataclasses.dataclass(frozen=True)
class _NNXLoss:
    graphdef: Any
    output_loss: Callable

    def __call__(self, position, frozen, batch):
        inputs, targets = batch
        return _unwrap(self.output_loss)(self.outputs(position, frozen, inputs), targets)

    def outputs(self, position, frozen, inputs):
        """The model's outputs on ``inputs``."""
        return self.params(position, frozen)(inputs)

    def params(self, position, frozen):
        """The model, merged from the moving and frozen state."""
        from flax import nnx

        return nnx.merge(self.graphdef, position, *frozen)


def from_nnx(model, data: PyTree, loss: Callable, *, where: Any = None) -> Target:
    """Target for an ``nnx.Module`` evaluated as ``loss(model(inputs), targets)``.

    Args:
        model: the module at w*.
        data: ``(inputs, targets)`` with a common leading axis n.
        loss: ``loss(outputs, targets) -> scalar``, the batch mean of a per-example NLL (see
            :mod:`slt.losses`). The model's output shape is checked against the targets' for it here, from
            shapes alone (:func:`slt.losses.check_shapes`): targets that would broadcast against the outputs
            (``(n, 1)`` against ``(n, 3)``) are a ``ValueError``.
        where: an NNX filter (a type, ``nnx.PathContains('layer1')``, ``nnx.All(...)``, a predicate
            ``(path, value) -> bool`` ...). Only ``nnx.Param`` leaves that pass it move; by default every
            ``nnx.Param`` moves and all other state (batch statistics, RNG counters) stays fixed. A predicate
            may also return, for a parameter, a boolean mask of its shape or an index expression: then only
            those entries move (see the module docstring; :func:`slt.components` builds such selectors).
    """
    from flax import nnx

    data = _check_supervised(data)
    n = check_data(data)
    if where is not None:
        masked = _nnx_masked_target(model, data, n, loss, where)
        if masked is not None:
            return masked
    if where is None:
        graphdef, moving, *frozen = nnx.split(model, nnx.Param, ...)
    else:
        graphdef, moving, *frozen = nnx.split(model, nnx.All(nnx.Param, where), nnx.Param, ...)
        if not jax.tree_util.tree_leaves(moving):
            raise ValueError("`where` selects no nnx.Param of the model: at least one parameter must move.")
    _check_float_leaves(moving, "model parameters")
    frozen = tuple(frozen)

    def rebuild(position):
        return nnx.merge(graphdef, position, *frozen)

    target_loss = _NNXLoss(graphdef, _static(loss))
    _check_output_shapes(target_loss, moving, frozen, data)
    return Target(target_loss, moving, frozen, data, n, rebuild)


@dataclasses.dataclass(frozen=True)
class _NNXMaskedLoss:
    """An NNX model whose parameters move leaf by leaf or entry by entry (``mask`` as for pytrees)."""

    graphdef: Any
    output_loss: Callable
    treedef: Any
    mask: tuple

    def __call__(self, position, frozen, batch):
        inputs, targets = batch
        return _unwrap(self.output_loss)(self.outputs(position, frozen, inputs), targets)

    def outputs(self, position, frozen, inputs):
        """The model's outputs on ``inputs``."""
        return self.params(position, frozen)(inputs)

    def params(self, position, frozen):
        """The model, merged from the moving entries, the frozen parameters and the other state."""
        from flax import nnx

        frozen_params, rest = frozen
        state = _merge_leaves(self.treedef, self.mask, position, frozen_params)
        return nnx.merge(self.graphdef, state, *rest)


def _nnx_masked_target(model, data, n: int, loss: Callable, where: Any) -> Target | None:
    """The target for a ``where`` that returns a mask for some ``nnx.Param``; ``None`` when it returns only
    booleans (then NNX's own filtering applies, :func:`from_nnx`)."""
    from flax import nnx

    graphdef, params, *rest = nnx.split(model, nnx.Param, ...)
    predicate = nnx.filterlib.to_predicate(where)
    variables = dict(nnx.to_flat_state(params))
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
    selections = []
    for p, leaf in leaves_with_path:
        names = path_names(p)
        variable = variables.get(names, leaf)
        selections.append(_selection(predicate(names, variable), leaf, names))
    if all(isinstance(m, bool) for m in selections):
        return None
    mask, moving, frozen_params = _split_leaves(leaves_with_path, selections)
    _check_float_leaves(moving, "model parameters")
    frozen = (frozen_params, tuple(rest))

    def rebuild(position):
        return nnx.merge(graphdef, _merge_leaves(treedef, mask, position, frozen_params), *rest)

    target_loss = _NNXMaskedLoss(graphdef, _static(loss), treedef, mask)
    _check_output_shapes(target_loss, moving, frozen, data)
    return Target(target_loss, moving, frozen, data, n, rebuild)


# ----------------------------------------------------------------------------------------------- linen
@dataclasses.dataclass(frozen=True)
class _LinenLoss:
    module: Any
    output_loss: Callable
    treedef: Any
    mask: tuple[bool, ...]

    def __call__(self, position, frozen, batch):
        inputs, targets = batch
        return _unwrap(self.output_loss)(self.outputs(position, frozen, inputs), targets)

    def outputs(self, position, frozen, inputs):
        """The module's outputs on ``inputs``."""
        return _unwrap(self.module).apply(self.params(position, frozen), inputs)

    def params(self, position, frozen):
        """The module's variables."""
        moving_frozen, other_collections = frozen
        return {"params": _merge_leaves(self.treedef, self.mask, position, moving_frozen), **other_collections}


def from_linen(module, variables, data: PyTree, loss: Callable, *, where: PathPredicate | None = None):
    """Target for a linen module evaluated as ``loss(module.apply(variables, inputs), targets)``.

    Only the ``'params'`` collection moves (restricted further by the path predicate ``where``); other
    collections (``'batch_stats'`` ...) stay fixed. As for :func:`from_nnx`, the module's output shape is
    checked against the targets' for ``loss`` (:func:`slt.losses.check_shapes`).
    """
    data = _check_supervised(data)
    n = check_data(data)
    if not (hasattr(variables, "keys") and "params" in variables):
        raise ValueError("`variables` must be a linen variable dict with a 'params' collection.")
    params = variables["params"]
    others = {k: v for k, v in variables.items() if k != "params"}
    moving, frozen_leaves, treedef, mask = _split_by_predicate(
        params, where if where is not None else (lambda path, leaf: True), "variables['params']"
    )
    _check_float_leaves(moving, "variables['params']")
    target_loss = _LinenLoss(_static(module), _static(loss), treedef, mask)
    _check_output_shapes(target_loss, moving, (frozen_leaves, others), data)

    def rebuild(position):
        return {"params": _merge_leaves(treedef, mask, position, frozen_leaves), **others}

    return Target(target_loss, moving, (frozen_leaves, others), data, n, rebuild)


# ------------------------------------------------------------------------------------------ any call form
def make_target(model_or_loss, *args, loss=None, where=None) -> Target:
    """Build a :class:`Target` from any of the forms :func:`slt.estimate_llc` accepts."""
    # Only a module of an already-imported Flax API can be an instance of it: importing flax.nnx just to
    # test a plain loss function costs ~0.6 s on a first call.
    nnx, linen = sys.modules.get("flax.nnx"), sys.modules.get("flax.linen")
    is_nnx = nnx is not None and isinstance(model_or_loss, nnx.Module)
    is_linen = linen is not None and isinstance(model_or_loss, linen.Module)
    if is_nnx or is_linen:
        form = "estimate_llc(model, data, loss=...)" if is_nnx else "estimate_llc(module, variables, data, loss=...)"
        if loss is None:
            raise ValueError(
                f"`loss` is required for a model: {form}, with loss(outputs, targets) -> scalar, e.g. "
                "slt.losses.gaussian_nll or slt.losses.cross_entropy."
            )
        if is_nnx:
            if len(args) != 1:
                raise ValueError(f"expected {form}; got {len(args)} positional arguments after the model.")
            return from_nnx(model_or_loss, args[0], loss, where=where)
        if len(args) != 2:
            raise ValueError(f"expected {form}; got {len(args)} positional arguments after the module.")
        return from_linen(model_or_loss, args[0], args[1], loss, where=where)
    if loss is not None:
        raise ValueError("`loss` is only for model forms; a loss_fn(params, batch) already is the loss.")
    if len(args) != 2:
        raise ValueError(
            "expected estimate_llc(loss_fn, params, data, ...) with loss_fn(params, batch) -> scalar; "
            f"got {len(args)} positional arguments after loss_fn."
        )
    return from_loss_fn(model_or_loss, args[0], args[1], where=where)


# --------------------------------------------------------------------------------- losses at the centre
def _per_example_losses_impl(loss, position, frozen, data, chunk_size):
    def one(example):
        batch = jax.tree_util.tree_map(lambda x: x[None], example)
        return loss(position, frozen, batch)

    return jax.lax.map(one, data, batch_size=chunk_size)


_per_example_losses = jax.jit(_per_example_losses_impl, static_argnames=("loss", "chunk_size"))


def per_example_losses(target: Target, position: PyTree | None = None, chunk_size: int = 1024) -> np.ndarray:
    """Per-example losses ``loss(w, [x_i])`` for every example, vectorized in chunks (one compile).

    Used for the loss at w* on the full data set (its mean) and for the paired minibatch estimate.
    """
    position = target.position if position is None else position
    chunk_size = int(min(chunk_size, target.num_data))
    out = _per_example_losses(target.loss, position, target.frozen, target.data, chunk_size)
    return np.asarray(out)


def _losses_at_center_impl(loss, position, frozen, data, chunk_size, head):
    per_example = _per_example_losses_impl(loss, position, frozen, data, chunk_size)
    return per_example, loss(position, frozen, jax.tree_util.tree_map(lambda x: x[:head], data))


_losses_at_center = jax.jit(_losses_at_center_impl, static_argnames=("loss", "chunk_size", "head"))


def check_loss_at_center(target: Target, chunk_size: int) -> np.ndarray:
    """Per-example losses at w*, after checking the loss is a finite scalar batch mean of them.

    One compiled call gives both the per-example losses and the loss of the first ``chunk_size`` examples
    as one batch (the mean check below), and one transfer brings them to the host."""
    m = min(target.num_data, chunk_size)
    per_example, batch_loss = jax.device_get(
        _losses_at_center(target.loss, target.position, target.frozen, target.data, m, m)
    )
    if np.shape(batch_loss) != ():
        raise ValueError(
            f"the loss must return a scalar (the batch mean of per-example losses); it returned shape "
            f"{np.shape(batch_loss)}."
        )
    if not np.all(np.isfinite(per_example)):
        bad = np.flatnonzero(~np.isfinite(per_example))
        raise ValueError(
            f"the loss at w* (`params`) is not finite on {bad.size} of {per_example.size} examples (first "
            f"index {bad[0]}); the LLC needs a finite L_n(w*). Check the parameters and the data."
        )
    # The paired estimator and the chunked L_n(w*) assume loss(w, batch) = mean of per-example losses.
    batch_loss = float(batch_loss)
    mean_loss = float(np.mean(per_example[:m], dtype=np.float64))
    if not math.isclose(batch_loss, mean_loss, rel_tol=1e-3, abs_tol=1e-5 * (1.0 + abs(mean_loss))):
        raise ValueError(
            f"the loss of a batch of {m} examples ({batch_loss:.6g}) is not the mean of their per-example "
            f"losses ({mean_loss:.6g}). `loss_fn(params, batch)` must return the batch *mean* of a "
            "per-example negative log-likelihood (no sums over the batch, no batch statistics)."
        )
    return per_example
