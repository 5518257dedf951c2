"""The package layout: no import cycles between slt's modules, every module imports on its own, every public
name resolves, and a sampling setting has one default everywhere."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import slt

ROOT = Path(slt.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The slt modules that ``name`` imports anywhere in its source: at the top and inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` imports the module a.b when there is one, else a name of a
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_list_covers_the_package():
    assert {"slt", "slt.llc", "slt.targets", "slt._src.validate", "slt.free_energy._local"} <= set(MODULES)


def test_no_import_cycles():
    """The graph of ``import`` / ``from slt... import`` statements, module level and function level, is acyclic:
    every module sits above the modules it uses, and none reaches back up, not even lazily."""
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks one fresh interpreter state per module")
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each module is imported first, in a fresh interpreter: no import order hides a cycle or a missing import.
    One subprocess loads the third-party libraries once, then forks a child per module before any slt import
    (third-party imports cannot hide an slt import-order problem)."""
    script = textwrap.dedent(
        """
        import importlib, os, sys, traceback
        # third-party, loaded once and shared by the children (importing them is most of a child's time);
        # nothing of slt is loaded yet
        import arviz, blackjax, blackjax.mcmc, flax.nnx, jax, matplotlib, numpy, optax, scipy.optimize, xarray, zarr
        matplotlib.use("Agg")
        assert not any(m == "slt" or m.startswith("slt.") for m in sys.modules)
        failed = []
        for name in sys.argv[1:]:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            if os.waitpid(pid, 0)[1] != 0:
                failed.append(name)
        print("FAILED", failed)
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-c", script, *MODULES], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "FAILED []" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_every_public_name_resolves():
    """Every name in ``slt.__all__`` and in each module's ``__all__`` exists."""
    missing = [f"slt.{n}" for n in slt.__all__ if not hasattr(slt, n)]
    for name in MODULES:
        module = importlib.import_module(name)
        missing += [f"{name}.{n}" for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
    assert not missing


# Settings of every estimator that samples: the same concept, the same default, in every public function.
SHARED_DEFAULTS = ("bias_tolerance", "precision", "time_budget", "num_chains", "localization", "chunk_size")


def test_a_sampling_setting_has_one_default_everywhere():
    defaults: dict[str, dict] = {name: {} for name in SHARED_DEFAULTS}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for public in getattr(module, "__all__", ()):
            obj = getattr(module, public)
            if not callable(obj) or module_name == "slt.models" or module_name.startswith("slt.models."):
                continue  # models train with their own batch and chunk sizes
            try:
                parameters = inspect.signature(obj).parameters.values()
            except (TypeError, ValueError):
                continue
            for p in parameters:
                if p.name in defaults and p.default is not inspect.Parameter.empty:
                    defaults[p.name].setdefault(repr(p.default), []).append(f"{module_name}.{public}")
    assert list(defaults["bias_tolerance"]) == [repr(slt.calibration.BIAS_TOLERANCE)], defaults["bias_tolerance"]
    disagree = {name: values for name, values in defaults.items() if len(values) > 1}
    assert not disagree, disagree
