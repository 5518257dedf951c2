"""Run stores: a sampling run streamed to a Zarr directory, chunk by chunk, resumable bit for bit.

Layout of ``store/`` (Zarr v3; every array carries its dimension names, so ``xarray.open_datatree(store,
engine="zarr")`` reads it as a DataTree, the layout ArviZ 1.x uses):

* ``sample_stats/<name>``: the kernel's per-step info at each record, dims ``([cell,] chain, draw)``;
* ``observables/<name>``: dims ``([cell,] chain, draw, <name>_dim_0, ...)``;
* ``state/slot0``, ``state/slot1``: the sampler state (and the per-chain divergence step) after the last
  complete chunk, written alternately so that one is always whole;
* ``progress.json``: the fingerprint of the run's arguments, and per chain group the number of complete chunks
  and the valid state slot. It is replaced atomically (``os.replace``) after the chunk's records and state are
  written, so a run killed at any moment loses at most the chunk in flight.

Randomness depends only on the key and the step (see :mod:`slt._src.driver`), so a resumed run continues
from the stored state with exactly the numbers the uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

__all__ = ["RunStore", "StoreMismatchError"]

FORMAT = "slt-run/1"


class StoreMismatchError(ValueError):
    """The arguments of a call differ from those of the run in its store."""


def _digest(tree) -> str:
    h = hashlib.sha1()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h.update(str(treedef).encode())
    for leaf in leaves:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def _name(obj) -> str:
    fn = getattr(obj, "loss_fn", None) or getattr(obj, "output_loss", None)
    inner = getattr(fn, "obj", fn)
    parts = [type(obj).__module__ + "." + type(obj).__qualname__]
    if inner is not None:
        parts.append(getattr(inner, "__module__", "") + "." + getattr(inner, "__qualname__", type(inner).__name__))
    return ":".join(parts)


def fingerprint(program, dyn: dict, *, num_chains: int, num_steps: int, groups, init_position) -> dict:
    """What must match for a store to be resumed: settings by value, arrays by digest."""
    factory = program.factory
    return {
        "format": FORMAT,
        "loss": _name(program.loss),
        "sampler": getattr(factory, "__module__", "") + "." + getattr(factory, "__qualname__", repr(factory)),
        "num_chains": num_chains,
        "num_steps": num_steps,
        "chain_groups": len(groups),
        "batch_size": program.batch_size,
        "steps_per_chunk": program.block * program.blocks_per_chunk,
        "thin": program.thin,
        "observables": [name for name, _ in program.observables],
        "batched": list(program.batched),
        **{f"{k} (digest)": _digest(v) for k, v in dyn.items() if k != "data"},
        "data (digest)": _digest(dyn["data"]),
        "init_position (digest)": _digest(init_position),
    }


class RunStore:
    """Writes the records and resume points of one run (see the module docstring)."""

    def __init__(self, path, progress, num_chains, groups, num_chunks, lead, num_records):
        self.path, self.progress, self.num_records = path, progress, num_records
        self.num_chains, self.groups, self.num_chunks, self.lead = num_chains, groups, num_chunks, lead
        self.writer = jax.process_index() == 0

    # ------------------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path, *, program, dyn, num_chains, num_steps, groups, num_chunks, attrs, init_position):
        import zarr

        path = os.fspath(path)
        fp = fingerprint(
            program, dyn, num_chains=num_chains, num_steps=num_steps, groups=groups, init_position=init_position
        )
        progress_file = os.path.join(path, "progress.json")
        if os.path.exists(progress_file):
            with open(progress_file) as f:
                progress = json.load(f)
            old = progress.get("fingerprint", {})
            differ = [k for k in sorted(set(old) | set(fp)) if old.get(k) != fp.get(k)]
            if differ:
                detail = "; ".join(f"{k}: store has {old.get(k)!r}, this call {fp.get(k)!r}" for k in differ)
                raise StoreMismatchError(
                    f"the store {path!r} holds a run with other arguments ({detail}). Pass the same arguments to "
                    "resume it, or another `store=` path for a new run."
                )
        else:
            if os.path.exists(path) and os.listdir(path):
                raise StoreMismatchError(
                    f"`store` {path!r} exists and is not an slt run store (no progress.json); give an empty or new "
                    "directory."
                )
            progress = {"fingerprint": fp, "done": [0] * len(groups), "slot": [0] * len(groups)}
            if jax.process_index() == 0:
                os.makedirs(path, exist_ok=True)
                root = zarr.open_group(path, mode="w", zarr_format=3)
                root.attrs.update({"format": FORMAT, **_jsonable(attrs or {})})
                _atomic_json(progress_file, progress)
        num_records = -(-num_steps // program.thin)
        return cls(path, progress, num_chains, groups, num_chunks, 1 if program.batched else 0, num_records)

    # ------------------------------------------------------------------------------------------- resume
    def resume(self, g: int, treedef) -> tuple[int, Any, list]:
        """``(complete chunks, carry or None, [records of those chunks])`` of chain group ``g``."""
        import zarr

        done = int(self.progress["done"][g])
        if done == 0:
            return 0, None, []
        root = zarr.open_group(self.path, mode="r")
        rows = self.groups[g]
        slot = root[f"state/slot{self.progress['slot'][g]}"]
        leaves = [np.asarray(slot[f"leaf{i}"][(slice(None),) * self.lead + (rows,)]) for i in range(treedef.num_leaves)]
        carry = jax.tree_util.tree_unflatten(treedef, leaves)
        records = []
        for kind in ("sample_stats", "observables"):
            group = root[kind] if kind in root else {}
            part = {}
            for name in group.keys() if hasattr(group, "keys") else []:
                arr = group[name]
                rpc = arr.attrs["records_per_chunk"]
                index = (slice(None),) * self.lead + (rows, slice(0, min(done * rpc, self.num_records)))
                part[name] = np.asarray(arr[index])
            records.append(part)
        return done, carry, [tuple(records)]

    # -------------------------------------------------------------------------------------------- write
    def write(self, g: int, c: int, rec, carry) -> None:
        """Records of chunk ``c`` of group ``g``, then the state, then the progress file (atomically)."""
        if not self.writer:
            return
        import zarr

        root = zarr.open_group(self.path, mode="a")
        rows = self.groups[g]
        for kind, values in zip(("sample_stats", "observables"), rec):
            group = root.require_group(kind)
            for name, value in values.items():
                value = np.asarray(value)
                rpc = value.shape[self.lead + 1]
                if name not in group:
                    shape = list(value.shape)
                    shape[self.lead] = self.num_chains
                    shape[self.lead + 1] = self.num_records
                    chunks = list(shape)
                    chunks[self.lead + 1] = rpc
                    dims = (["cell"] if self.lead else []) + ["chain", "draw"]
                    dims += [f"{name}_dim_{i}" for i in range(value.ndim - len(dims))]
                    arr = group.create_array(
                        name,
                        shape=tuple(shape),
                        chunks=tuple(chunks),
                        dtype=value.dtype,
                        dimension_names=dims,
                        fill_value=0,
                    )
                    arr.attrs["records_per_chunk"] = rpc
                arr = group[name]
                stop = min((c + 1) * rpc, self.num_records)  # the last chunk may run past the last record
                index = (slice(None),) * self.lead + (rows, slice(c * rpc, stop))
                arr[index] = value[(slice(None),) * (self.lead + 1) + (slice(0, stop - c * rpc),)]
        slot = 1 - int(self.progress["slot"][g]) if self.progress["done"][g] else int(self.progress["slot"][g])
        leaves = jax.tree_util.tree_leaves(carry)
        state = root.require_group(f"state/slot{slot}")
        for i, leaf in enumerate(leaves):
            leaf = np.asarray(leaf)
            name = f"leaf{i}"
            if name not in state:
                shape = list(leaf.shape)
                shape[self.lead] = self.num_chains
                state.create_array(name, shape=tuple(shape), dtype=leaf.dtype, fill_value=0)
            state[name][(slice(None),) * self.lead + (rows,)] = leaf
        self.progress["done"][g] = c + 1
        self.progress["slot"][g] = slot
        _atomic_json(os.path.join(self.path, "progress.json"), self.progress)

    def finish(self) -> None:
        if self.writer:
            self.progress["complete"] = True
            _atomic_json(os.path.join(self.path, "progress.json"), self.progress)


def _atomic_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)
