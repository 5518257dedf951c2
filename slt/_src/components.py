r"""A model's components by name, each a selector usable as ``where=`` (the weight-restricted LLC).

:func:`components` lists the parameter groups of a model (an ``nnx.Module``, linen variables, or a plain
parameter pytree): every module that owns parameters, cut to ``depth`` names (``"blocks.0.attn"``,
``"blocks.0.mlp"``, ``"embed"``), and, for the attention modules named in ``heads``, one selector per head
(``"blocks.0.attn.head.1"``) that picks that head's entries inside the fused or stacked projection arrays.
Restricting the LLC to one of them is the weight-refined LLC of Wang et al., arXiv 2410.02984:
:math:`\hat\lambda_S = n\beta(\mathbb E_{w_S}[L_n(w_S, w^*_{\bar S})] - L_n(w^*))` with only the entries S
moving (see :mod:`slt.targets` for how a sub-array is sampled).

**Head layout.** A layout is a list of ``(leaf, axis, parts)``: the leaf's path below the attention module,
the axis that carries the heads, and how many blocks of ``num_heads`` heads that axis holds. Along ``axis``
(size A) there are ``parts`` contiguous blocks of A / parts entries, each made of ``num_heads`` contiguous
slices of ``head_dim = A / (parts · num_heads)``: head h owns the entries
``p · A/parts + h · head_dim + [0, head_dim)`` for p = 0 … parts−1 (:func:`head_mask`). Two layouts are built in:

* ``"fused"`` (the default; slt's GPT follows it): ``qkv.kernel`` of shape (d_model, 3·d_model) with its
  columns ``[q | k | v]``, each of d_model = num_heads · head_dim columns in head order, i.e. the projection
  reshaped as ``(..., 3, num_heads, head_dim)``; ``qkv.bias`` (3·d_model,) likewise; ``out.kernel``
  (d_model, d_model) whose *rows* are the concatenated head outputs, head h the rows h·head_dim … (h+1)·head_dim.
  ``out.bias`` is shared by all heads and belongs to no head. As a layout:
  ``[("qkv.kernel", -1, 3), ("qkv.bias", -1, 3), ("out.kernel", 0, 1)]``.
* ``"stacked"`` (``flax.nnx.MultiHeadAttention``, linen's ``MultiHeadDotProductAttention``): ``query``,
  ``key``, ``value`` kernels of shape (d_model, num_heads, head_dim) and biases (num_heads, head_dim), heads on
  axis 1 (0 for the biases); ``out.kernel`` (num_heads, head_dim, d_model), heads on axis 0.

A layout leaf the module does not have (no bias, say) is skipped; an axis whose size is not a multiple of
``parts · num_heads`` is an error.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["HEAD_LAYOUTS", "Selector", "components", "head_mask"]

PyTree = Any

HEAD_LAYOUTS: dict[str, tuple] = {
    "fused": (("qkv.kernel", -1, 3), ("qkv.bias", -1, 3), ("out.kernel", 0, 1)),
    "stacked": (
        ("query.kernel", 1, 1),
        ("query.bias", 0, 1),
        ("key.kernel", 1, 1),
        ("key.bias", 0, 1),
        ("value.kernel", 1, 1),
        ("value.bias", 0, 1),
        ("out.kernel", 0, 1),
    ),
}


def head_mask(shape: Sequence[int], head: int, num_heads: int, *, axis: int = -1, parts: int = 1) -> np.ndarray:
    """Boolean mask of head ``head``'s entries in an array of ``shape`` (the layout of the module docstring).

    Example:
        >>> from slt import head_mask
        >>> head_mask((6,), 1, 2, parts=3).astype(int).tolist()  # [q0 q1 | k0 k1 | v0 v1], head_dim 1
        [0, 1, 0, 1, 0, 1]
        >>> head_mask((4, 2), 0, 2, axis=0).astype(int).tolist()  # rows of head 0 in an output projection
        [[1, 1], [1, 1], [0, 0], [0, 0]]
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError("`shape` must have at least one axis to hold the heads.")
    ax = axis % len(shape) if -len(shape) <= axis < len(shape) else None
    if ax is None:
        raise ValueError(f"`axis`={axis} is out of range for an array of shape {shape}.")
    if not (isinstance(num_heads, (int, np.integer)) and num_heads >= 1):
        raise ValueError(f"`num_heads` must be a positive integer; got {num_heads!r}.")
    if not (isinstance(parts, (int, np.integer)) and parts >= 1):
        raise ValueError(f"`parts` must be a positive integer; got {parts!r}.")
    if not (isinstance(head, (int, np.integer)) and 0 <= head < num_heads):
        raise ValueError(f"`head` must be an integer in [0, {num_heads}); got {head!r}.")
    size = shape[ax]
    if size % (parts * num_heads):
        raise ValueError(
            f"axis {axis} of an array of shape {shape} has {size} entries, not a multiple of parts × num_heads = "
            f"{parts} × {num_heads}: it cannot hold {parts} blocks of {num_heads} heads."
        )
    head_dim = size // (parts * num_heads)
    line = np.zeros(size, dtype=bool)
    for p in range(parts):
        start = p * (size // parts) + head * head_dim
        line[start : start + head_dim] = True
    return np.broadcast_to(np.expand_dims(line, [d for d in range(len(shape)) if d != ax]), shape).copy()


@dataclasses.dataclass(frozen=True)
class Selector:
    """A ``where`` selector: ``selector(path, leaf)`` returns ``True`` for a whole leaf under one of
    ``prefixes``, a boolean mask for a leaf listed in ``masks``, ``False`` otherwise. Selectors combine with ``|``
    (the union of what they select). Usable as ``where=`` for pytrees, linen and NNX (as an NNX predicate).

    Example:
        >>> import jax.numpy as jnp, slt
        >>> params = {"attn": {"qkv": {"kernel": jnp.zeros((4, 12))}, "out": {"kernel": jnp.zeros((4, 4))}}}
        >>> parts = slt.components(params, heads={"attn": 2}, depth=1)
        >>> list(parts)
        ['attn', 'attn.head.0', 'attn.head.1']
        >>> head = parts["attn.head.1"]
        >>> int(head(("attn", "qkv", "kernel"), params["attn"]["qkv"]["kernel"]).sum())  # 3 × 2 columns × 4 rows
        24
        >>> both = parts["attn.head.0"] | parts["attn.head.1"]
        >>> bool(both(("attn", "qkv", "kernel"), params["attn"]["qkv"]["kernel"]).all())
        True
    """

    name: str
    prefixes: tuple = ()  # path tuples: every leaf below one of them moves
    masks: tuple = ()  # (path tuple, _Mask) pairs

    def __call__(self, path, leaf) -> Any:
        names = tuple(path)
        if any(names[: len(p)] == p for p in self.prefixes):
            return True
        hits = [m.array for p, m in self.masks if p == names]
        if not hits:
            return False
        out = np.logical_or.reduce(hits)
        shape = tuple(np.shape(getattr(leaf, "value", leaf)))
        if out.shape != shape:
            raise ValueError(
                f"selector {self.name!r} holds a mask of shape {out.shape} for {'.'.join(map(str, names))}, whose "
                f"shape is {shape}: it was built for another model."
            )
        return out

    def __or__(self, other: Selector) -> Selector:
        if not isinstance(other, Selector):
            return NotImplemented
        return Selector(f"{self.name}|{other.name}", self.prefixes + other.prefixes, self.masks + other.masks)

    def num_selected(self, model_or_params) -> int:
        """How many scalar parameters of ``model_or_params`` this selects (d of the restricted LLC)."""
        return int(
            sum(np.sum(np.broadcast_to(self(p, leaf), np.shape(leaf))) for p, leaf in _named_leaves(model_or_params))
        )


class _Mask:
    """A boolean array compared by value (so that a :class:`Selector` stays hashable)."""

    __slots__ = ("array", "_hash")

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array, dtype=bool)
        self._hash = hash((self.array.shape, np.packbits(self.array).tobytes()))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Mask) and bool(np.array_equal(self.array, other.array))

    def __repr__(self) -> str:
        return f"mask({int(self.array.sum())} of {self.array.size})"


def _named_leaves(model_or_params) -> list[tuple[tuple, Any]]:
    """(path names, array) of every parameter: an NNX module's ``nnx.Param`` leaves, linen's ``params``
    collection, or the leaves of a plain pytree."""
    from slt.targets import path_names

    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model_or_params, nnx.Module):
        tree = nnx.state(model_or_params, nnx.Param)
    elif (
        isinstance(model_or_params, Mapping)
        and "params" in model_or_params
        and len(model_or_params) >= 1
        and all(isinstance(v, Mapping) for v in model_or_params.values())
    ):
        tree = model_or_params["params"]
    else:
        tree = model_or_params
    leaves = [(path_names(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if not leaves:
        raise ValueError("`model_or_params` has no parameters (no array leaves).")
    return leaves


def _dotted(names: Sequence[Any]) -> str:
    return ".".join(str(n) for n in names)


def _module_of(names: tuple, depth: int) -> tuple:
    """The leaf's owning module (its path without the last name), cut after ``depth`` names that are not
    integer indices; a top-level leaf is its own component."""
    owner = names[:-1] if len(names) > 1 else names
    kept, count = [], 0
    for n in owner:
        if count == depth:
            break
        kept.append(n)
        if not isinstance(n, (int, np.integer)):
            count += 1
    return tuple(kept)


def _layout(spec: Any, pattern: str) -> tuple[int, tuple]:
    """``(num_heads, ((relative path tuple, axis, parts), ...))`` from a ``heads`` value."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        num_heads, layout = int(spec), "fused"
    elif isinstance(spec, tuple) and len(spec) == 2:
        num_heads, layout = spec
    else:
        raise ValueError(
            f"`heads[{pattern!r}]` must be num_heads or (num_heads, layout) with layout 'fused', 'stacked' or a "
            f"list of (leaf, axis, parts); got {spec!r}."
        )
    if isinstance(layout, str):
        if layout not in HEAD_LAYOUTS:
            raise ValueError(f"`heads[{pattern!r}]`: unknown layout {layout!r}; built-in: {sorted(HEAD_LAYOUTS)}.")
        layout = HEAD_LAYOUTS[layout]
    if not (isinstance(num_heads, (int, np.integer)) and num_heads >= 1):
        raise ValueError(f"`heads[{pattern!r}]`: num_heads must be a positive integer; got {num_heads!r}.")
    entries = []
    for item in layout:
        if not (isinstance(item, (tuple, list)) and len(item) == 3):
            raise ValueError(f"`heads[{pattern!r}]`: a layout entry must be (leaf, axis, parts); got {item!r}.")
        leaf, axis, parts = item
        rel = tuple(leaf.split(".")) if isinstance(leaf, str) else tuple(leaf)
        entries.append((rel, int(axis), int(parts)))
    return int(num_heads), tuple(entries)


def components(model_or_params, *, heads: Mapping[str, Any] | None = None, depth: int = 2) -> dict[str, Selector]:
    """The components of a model, by name, each a :class:`Selector` usable as ``where=`` in
    :func:`slt.estimate_llc` (and everywhere ``where`` is taken).

    Args:
        model_or_params: an ``nnx.Module`` (its ``nnx.Param`` leaves), linen variables (their ``params``), or a
            parameter pytree.
        heads: ``{pattern: num_heads}`` or ``{pattern: (num_heads, layout)}``: the attention modules, by a
            glob over their dotted paths (``"blocks.*.attn"``, or ``"*attn"``; a pattern with no dot and no
            wildcard matches the last name, so ``"attn"`` matches ``blocks.0.attn``; ``""`` is the model itself, whose
            heads are then named ``"head.<h>"``), and how their heads lie in
            the projection arrays (``layout``: ``"fused"``, ``"stacked"`` or a list of ``(leaf, axis, parts)``;
            see the module docstring). Each matched module gets ``"<path>.head.<h>"`` entries.
        depth: how many names (integer indices not counted) a module component keeps: with 2,
            ``blocks.0.attn.qkv.kernel`` belongs to ``"blocks.0.attn"``.

    Returns:
        An ordered ``dict`` name → :class:`Selector`: the modules in the order of the parameters, each
        attention module followed by its heads.

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> params = {"attn": {"qkv": {"kernel": jnp.zeros((8, 24)), "bias": jnp.zeros(24)},
        ...                    "out": {"kernel": jnp.zeros((8, 8)), "bias": jnp.zeros(8)}},
        ...           "mlp": {"w": jnp.zeros((8, 8))}}
        >>> parts = slt.components(params, heads={"attn": 4}, depth=1)
        >>> list(parts)
        ['attn', 'attn.head.0', 'attn.head.1', 'attn.head.2', 'attn.head.3', 'mlp']
        >>> parts["attn.head.2"].num_selected(params)  # q, k, v: 3 × (8 + 1) × 2, out: 2 rows × 8
        70
    """
    leaves = _named_leaves(model_or_params)
    if not (isinstance(depth, (int, np.integer)) and depth >= 1):
        raise ValueError(f"`depth` must be a positive integer; got {depth!r}.")
    specs = {}
    for pattern, spec in (heads or {}).items():
        if not isinstance(pattern, str):
            raise ValueError(f"`heads` keys must be dotted path patterns (str); got {pattern!r}.")
        specs[pattern] = _layout(spec, pattern)
    shapes = {names: tuple(np.shape(leaf)) for names, leaf in leaves}

    def matches(pattern: str, module: tuple) -> bool:
        dotted = _dotted(module)
        if pattern == "":
            return module == ()
        if "." not in pattern and not any(c in pattern for c in "*?["):
            return bool(module) and str(module[-1]) == pattern
        return fnmatch.fnmatchcase(dotted, pattern)

    out: dict[str, Selector] = {}
    matched: set[str] = set()
    modules_seen: list[tuple] = []
    for names, _ in leaves:
        module = _module_of(names, depth)
        if module not in modules_seen:
            modules_seen.append(module)
            out[_dotted(module)] = Selector(_dotted(module), prefixes=(module,))
        # attention modules: any prefix of the leaf's path that a heads pattern matches
        for cut in range(len(names)):
            prefix = names[:cut]
            name = _dotted(prefix)
            stem = f"{name}.head" if name else "head"
            for pattern, (num_heads, layout) in specs.items():
                if not matches(pattern, prefix) or f"{stem}.0" in out:
                    continue
                found = [(prefix + rel, axis, parts) for rel, axis, parts in layout if prefix + rel in shapes]
                if not found:
                    continue
                matched.add(pattern)
                for h in range(num_heads):
                    masks = []
                    for path, axis, parts in found:
                        try:
                            mask = head_mask(shapes[path], h, num_heads, axis=axis, parts=parts)
                        except ValueError as err:
                            raise ValueError(f"`heads[{pattern!r}]` at {_dotted(path)}: {err}") from None
                        masks.append((path, _Mask(mask)))
                    out[f"{stem}.{h}"] = Selector(f"{stem}.{h}", masks=tuple(masks))
    unmatched = [p for p in specs if p not in matched]
    if unmatched:
        raise ValueError(
            f"`heads` pattern(s) {unmatched} match no module holding the layout's leaves; modules: "
            f"{sorted({_dotted(n[:-1]) for n, _ in leaves})}."
        )
    return out
