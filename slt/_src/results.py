r"""Saving results to disk and reading them back: ``result.save(path)`` and :func:`slt.load`.

Format: a **Zarr v3 directory**. Zarr because it is a real storage format users already read (``zarr``,
``xarray.open_datatree(path, engine="zarr")``, other languages' Zarr readers), because the package already
writes its run stores in it (:mod:`slt._src.store`), and because it keeps every array bit for bit with its
dtype, shape and NaN positions, without pickles. Layout of ``path/``:

* every array of the result is a Zarr array at the path of its field: ``llc_trace``,
  ``sampler_stats/acceptance_rate``, ``calibration/first/llc_mean``, ``results/3/llc_trace`` (list items by
  index; dict keys with characters other than letters, digits, ``_ . -`` are replaced by ``_``). Each carries
  dimension names ``<name>_dim_<i>``, so xarray opens every group as a Dataset;
* the root group's attribute ``slt_result`` is the JSON **manifest**: the format tag and version, and the
  tree of the result, in which every node says what it was: a dataclass (its class as ``module:qualname``,
  its fields, and any attributes set on the instance), a list, tuple or dict (its items, dict keys with
  their JSON types), a named tuple, a Python or NumPy scalar (its value and dtype; non-finite floats as the
  strings ``"nan"``, ``"inf"``, ``"-inf"``), ``None``, or an array (its Zarr path).
  Scalars, strings, settings and warnings live in the manifest only. ``notes`` lists what was converted or
  left out.

:func:`load` rebuilds the tree: the dataclasses (recursively: ``LLCResult.calibration`` and its ``.first``,
``LLCTrajectory.results``, ``ModelComparison.llc_results`` and its ``Crossover`` objects, ...) without calling
``__init__``; a field the class has gained since the save gets its default. It only imports classes from the
``slt`` package (a file names the class; loading must not import arbitrary modules); a class that has moved
within ``slt`` is found by its public name ``slt.<Name>``.

What cannot be stored as it was:

* JAX arrays (e.g. ``CalibrationResult.chosen_position``, a pytree of device arrays) are stored as NumPy arrays
  and come back as NumPy arrays; containers (dict, list, tuple, named tuples of ``slt``) keep their structure.
  Dataclasses and named tuples from outside ``slt`` are stored as dicts of their fields.
  Other pytree nodes (e.g. a Flax ``nnx.State``) are stored as a dict of their leaves keyed by the leaf path
  (``jax.tree_util.keystr``) and come back as that dict.
* Anything else (callables, arbitrary objects, arrays of object dtype or of a dtype Zarr lacks) is dropped:
  it loads as ``None``, the manifest's ``notes`` say which field, and :func:`save` warns.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from typing import Any

import numpy as np

__all__ = ["Result", "save", "load", "FORMAT", "VERSION"]


class Result:
    """Base of every result dataclass: ``save(path)`` (everything in it, read back by :func:`slt.load`)."""

    def save(self, path, *, overwrite: bool = False) -> None:
        """Write this result (arrays, settings, warnings, flags, nested results) to the Zarr directory ``path``;
        :func:`slt.load` reads it back. An existing path is replaced only with ``overwrite=True``, and only
        when it holds a saved result."""
        save(self, path, overwrite=overwrite)


FORMAT = "slt-result"
VERSION = 1
_ATTR = "slt_result"

NOT_A_RESULT = (
    "{path!r} is not a saved slt result ({why}). slt.load reads directories written by `result.save(path)`; "
    "a run store written by `estimate_llc(..., store=path)` (it has progress.json) is read with "
    "xarray.open_datatree(path, engine='zarr')."
)


# -------------------------------------------------------------------------------------------------- save
def save(result: Any, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write ``result`` (a result dataclass, or any tree of them, arrays, scalars, lists and dicts) to the Zarr
    directory ``path``; read it back with :func:`load`. See the module docstring for the layout.

    The directory is written next to ``path`` and moved into place when complete, so a crash never leaves a
    half-written result at ``path``. ``overwrite=True`` replaces an existing saved result (never a directory
    that is not one).
    """
    import zarr

    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        if not overwrite:
            raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace a saved result.")
        if not _is_saved_result(path):
            raise FileExistsError(
                f"{path!r} exists and is not a saved slt result; overwrite=True only replaces saved results. "
                "Choose another path."
            )
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        root = zarr.open_group(tmp, mode="w", zarr_format=3)
        writer = _Writer(root)
        manifest = writer.encode(result, "", ())
        root.attrs[_ATTR] = {
            "format": FORMAT,
            "version": VERSION,
            "class": _class_name(type(result)),
            "slt_version": _slt_version(),
            "notes": writer.notes,
            "manifest": manifest,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr: consolidated metadata is not yet part of the v3 spec
            zarr.consolidate_metadata(tmp)
        if os.path.lexists(path):  # overwrite: move the old result aside, put the new one in place, then delete
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if writer.dropped:
        warnings.warn(
            "save: these fields cannot be stored and were left out (they load as None): " + "; ".join(writer.dropped),
            UserWarning,
            stacklevel=2,
        )


class _Writer:
    def __init__(self, root):
        self.root = root
        self.notes: list[str] = []
        self.dropped: list[str] = []
        self.used: set[str] = set()

    # A node's Zarr path: the field names down to it, each made a safe Zarr node name, unique.
    def _array_path(self, parts: tuple[str, ...]) -> str:
        safe = [re.sub(r"[^A-Za-z0-9_.\-]", "_", str(p)) or "_" for p in parts] or ["value"]
        safe = ["_" + p if p.startswith("__") or set(p) <= {"."} else p for p in safe]
        base = "/".join(safe)
        name, i = base, 1
        while name in self.used or any(u.startswith(name + "/") or name.startswith(u + "/") for u in self.used):
            name, i = f"{base}~{i}", i + 1
        self.used.add(name)
        return name

    def _write_array(self, value: np.ndarray, label: str, parts) -> dict:
        if value.dtype.kind in "OV" or value.dtype.hasobject:
            return self._drop(label, f"{value.dtype} array")
        path = self._array_path(parts)
        group, _, name = path.rpartition("/")
        node = self.root.require_group(group) if group else self.root
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zarr: string dtypes have no finished v3 spec yet
                node.create_array(
                    name,
                    data=value,
                    dimension_names=[f"{name.split('~')[0]}_dim_{i}" for i in range(value.ndim)],
                )
        except (TypeError, ValueError):  # a dtype Zarr has no data type for (e.g. float128)
            return self._drop(label, f"{value.dtype} array")
        return {"kind": "array", "path": path}

    def _drop(self, label: str, what: str) -> dict:
        self.notes.append(f"{label or '<root>'}: {what} cannot be stored; dropped (loads as None).")
        self.dropped.append(f"{label or '<root>'} ({what})")
        return {"kind": "dropped", "type": what}

    def encode(self, value: Any, label: str, parts: tuple[str, ...]) -> dict:
        """The manifest node of ``value``; arrays are written under ``parts``. ``label``: for notes."""
        sub = lambda key: (f"{label}.{key}" if label else str(key), parts + (str(key),))  # noqa: E731
        if value is None:
            return {"kind": "none"}
        if isinstance(value, bool):
            return {"kind": "bool", "value": value}
        if isinstance(value, int):
            return {"kind": "int", "value": value}
        if isinstance(value, float):
            return {"kind": "float", "value": _float_json(value)}
        if isinstance(value, str):
            return {"kind": "str", "value": value}
        if isinstance(value, complex):
            return {"kind": "complex", "value": [_float_json(value.real), _float_json(value.imag)]}
        if isinstance(value, np.generic):
            if value.dtype.kind in "biu" or (value.dtype.kind == "f" and value.dtype.itemsize <= 8):
                item = value.item()
                item = _float_json(item) if isinstance(item, float) else item
                return {"kind": "numpy_scalar", "dtype": value.dtype.str, "value": item}
            return {"kind": "numpy_scalar_array", **self._write_array(np.asarray(value), label, parts)}
        if isinstance(value, np.ndarray):
            return self._write_array(value, label, parts)
        if _is_jax_array(value):
            self.notes.append(f"{label or '<root>'}: a JAX array, stored as a NumPy array.")
            return self._write_array(_to_numpy(value), label, parts)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            names = [f.name for f in dataclasses.fields(value)]
            if not _is_slt(type(value)):  # load rebuilds only slt's classes: keep the data as a dict
                self.notes.append(f"{label or '<root>'}: a {_class_name(type(value))}, stored as a dict of its fields.")
                return self.encode({name: getattr(value, name) for name in names}, label, parts)
            fields = {name: self.encode(getattr(value, name), *sub(name)) for name in names}
            extra = {k: v for k, v in getattr(value, "__dict__", {}).items() if k not in names}
            node = {"kind": "dataclass", "class": _class_name(type(value)), "fields": fields}
            if extra:  # attributes set on the instance outside the declared fields
                node["attributes"] = {k: self.encode(v, *sub(k)) for k, v in extra.items()}
            return node
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            if not _is_slt(type(value)):
                self.notes.append(f"{label or '<root>'}: a {_class_name(type(value))}, stored as a dict of its fields.")
                return self.encode(dict(zip(type(value)._fields, value)), label, parts)
            items = {k: self.encode(v, *sub(k)) for k, v in zip(type(value)._fields, value)}
            return {"kind": "namedtuple", "class": _class_name(type(value)), "items": items}
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, *sub(i)) for i, v in enumerate(value)]
            return {"kind": "list" if isinstance(value, list) else "tuple", "items": items}
        if isinstance(value, dict):
            items = []
            for k, v in value.items():
                if isinstance(k, (str, int, bool)) or k is None:
                    key = k
                elif isinstance(k, float) and math.isfinite(k):
                    key = k
                else:
                    self.notes.append(f"{label or '<root>'}: the key {k!r} is stored as its repr.")
                    key = repr(k)
                items.append([key, self.encode(v, *sub(k))])
            return {"kind": "dict", "items": items}
        leaves = _pytree_leaves(value)
        if leaves is not None:
            self.notes.append(
                f"{label or '<root>'}: a {_class_name(type(value))} pytree, stored as a dict of its leaves keyed "
                "by their paths (NumPy arrays)."
            )
            return {
                "kind": "dict",
                "items": [[key, self.encode(leaf, *sub(key))] for key, leaf in leaves],
                "pytree": _class_name(type(value)),
            }
        return self._drop(label, _class_name(type(value)))


# -------------------------------------------------------------------------------------------------- load
def load(path: str | os.PathLike) -> Any:
    """Read a result written by ``result.save(path)`` (or :func:`save`): the same classes, arrays, scalars,
    settings and warnings (see the module docstring for what device arrays and dropped fields become).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: ``path`` is not a saved slt result, or was written by a newer version of the format.

    Example:
        >>> import os, tempfile, jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> res = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(0), step_size=5e-3,
        ...                        num_chains=2, num_draws=1000, num_burnin=100)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     res.save(os.path.join(tmp, "llc"))
        ...     back = slt.load(os.path.join(tmp, "llc"))
        >>> type(back).__name__, back.llc_mean == res.llc_mean, bool(np.array_equal(back.llc_trace, res.llc_trace))
        ('LLCResult', True, True)
    """
    import zarr

    path = os.path.abspath(os.fspath(path))
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no saved result at {path!r}.")
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "zarr.json")):
        why = "not a directory" if not os.path.isdir(path) else "no zarr.json: not a Zarr v3 group"
        raise ValueError(NOT_A_RESULT.format(path=path, why=why))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = zarr.open_group(path, mode="r")
            meta = root.attrs.get(_ATTR)
    except Exception as err:  # a zarr.json that is not a group's, or unreadable
        raise ValueError(NOT_A_RESULT.format(path=path, why=f"unreadable Zarr group: {err}")) from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(NOT_A_RESULT.format(path=path, why=f"no {_ATTR!r} manifest in the root group's attributes"))
    if int(meta.get("version", 0)) > VERSION:
        raise ValueError(
            f"{path!r} was saved in version {meta['version']} of the slt result format; this slt reads up to "
            f"version {VERSION}. Upgrade slt to load it."
        )
    return _Reader(root).decode(meta["manifest"])


class _Reader:
    def __init__(self, root):
        self.root = root

    def decode(self, node: dict) -> Any:
        kind = node["kind"]
        if kind in ("none", "dropped"):
            return None
        if kind in ("bool", "int", "str"):
            return node["value"]
        if kind == "float":
            return float(node["value"])
        if kind == "complex":
            return complex(float(node["value"][0]), float(node["value"][1]))
        if kind == "numpy_scalar":
            return np.dtype(node["dtype"]).type(node["value"])
        if kind == "array":
            return self._array(node["path"])
        if kind == "numpy_scalar_array":
            return self._array(node["path"])[()]
        if kind in ("list", "tuple"):
            items = [self.decode(n) for n in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return {k: self.decode(n) for k, n in node["items"]}
        if kind == "namedtuple":
            cls = _find_class(node["class"])
            return cls(**{k: self.decode(n) for k, n in node["items"].items()})
        if kind == "dataclass":
            return self._dataclass(node)
        raise ValueError(f"unknown node kind {kind!r} in a saved result's manifest (written by a newer slt?).")

    def _array(self, path: str) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self.root[path][...])

    def _dataclass(self, node: dict) -> Any:
        cls = _find_class(node["class"])
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{node['class']} is no longer a dataclass; this result cannot be rebuilt.")
        saved = {k: self.decode(n) for k, n in node["fields"].items()}
        saved.update({k: self.decode(n) for k, n in node.get("attributes", {}).items()})
        obj = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name in saved:
                value = saved.pop(f.name)
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                raise ValueError(
                    f"the saved {node['class']} has no field {f.name!r}, which the class now requires (no default)."
                )
            object.__setattr__(obj, f.name, value)
        for name, value in saved.items():  # attributes set on the instance, or fields the class has dropped
            object.__setattr__(obj, name, value)
        return obj


# ------------------------------------------------------------------------------------------------ helpers
def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_slt(cls: type) -> bool:
    return cls.__module__ == "slt" or cls.__module__.startswith("slt.")


def _find_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if module != "slt" and not module.startswith("slt."):
        raise ValueError(
            f"the saved result names the class {name}, outside the slt package; slt.load only rebuilds slt's own "
            "classes (it does not import modules named by a file)."
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError):  # moved within slt: look for its public name, slt.<Name>
        moved = getattr(importlib.import_module("slt"), qualname.rpartition(".")[2], None)
        if isinstance(moved, type):
            return moved
        raise ValueError(f"the saved result's class {name} no longer exists in slt; it cannot be rebuilt.") from None


def _float_json(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)  # 'nan', 'inf', '-inf': float() reads them back


def _is_jax_array(value: Any) -> bool:
    jax = _jax()
    return jax is not None and isinstance(value, jax.Array)


def _to_numpy(value: Any) -> np.ndarray:
    jax = _jax()
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    return np.asarray(value)


def _pytree_leaves(value: Any) -> list[tuple[str, Any]] | None:
    """``[(keystr, leaf)]`` if ``value`` is a pytree node of arrays other than a plain container, else None."""
    jax = _jax()
    if jax is None:
        return None
    leaves, treedef = jax.tree_util.tree_flatten_with_path(value)
    if treedef.num_nodes == 1 or not leaves:  # a leaf (not a registered pytree node), or no arrays at all
        return None
    if not all(isinstance(leaf, (np.ndarray, np.generic, jax.Array, int, float, bool)) for _, leaf in leaves):
        return None
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in leaves]


def _jax():
    import sys

    return sys.modules.get("jax")  # only objects of an imported jax can be jax arrays


def _slt_version() -> str:
    import sys

    return getattr(sys.modules.get("slt"), "__version__", "unknown")


def _is_saved_result(path: str) -> bool:
    try:
        with open(os.path.join(path, "zarr.json")) as f:
            meta = json.load(f)
        return meta.get("attributes", {}).get(_ATTR, {}).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False
