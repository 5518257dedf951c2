"""Execute notebooks in place, outputs saved: ``python scripts/run_notebooks.py [NOTEBOOK ...]`` (``make notebooks``).

With no arguments, every ``notebooks/*.ipynb``. Each notebook runs top to bottom in a fresh kernel of *this*
interpreter (a kernel spec for ``sys.executable`` in a temporary directory, as in ``tests/test_notebooks.py``,
so no other Python's ``python3`` kernel is picked up), from the notebook's own folder, with the repository root
on ``PYTHONPATH`` and matplotlib's inline backend, so figures are saved as PNG outputs. ``--timeout`` bounds
each notebook as a whole (kernel start included): its cells share that many seconds.

A notebook is written back only when every cell ran; one that fails or runs out of time is left as it was,
and the script reports it and exits with status 1 after trying the others. The notebook's ``kernelspec``
metadata is kept (the temporary kernel's name is not written into it), and no per-cell timing metadata is
recorded, so that re-running a notebook changes only its outputs.

A cell that shows the same figure twice is reported: with the inline backend, a pyplot figure still open at
the end of a cell is shown again after ``display(fig)`` (close it with ``plt.close(fig)`` after displaying it,
or leave it to the backend).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

REPO = Path(__file__).resolve().parents[1]
KERNEL_NAME = "slt-notebooks-python"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def write_kernel_spec(root: Path) -> Path:
    """A kernel spec dir under ``root`` whose only kernel runs ``sys.executable -m ipykernel_launcher``."""
    spec_dir = root / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor} (slt notebooks)",
        "language": "python",
        # an MPLBACKEND inherited from the caller (Agg, say) would keep figures out of the outputs
        "env": {"MPLBACKEND": INLINE_BACKEND, "PYTHONPATH": pythonpath},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def repeated_figures(nb) -> list[str]:
    """Cells that show one PNG image more than once, as ``'cell i: N copies'``."""
    found = []
    for index, cell in enumerate(nb.cells):
        images = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        copies = max((images.count(image) for image in images), default=0)
        if copies > 1:
            found.append(f"cell {index}: {copies} copies")
    return found


def run_notebook(path: Path, kernel_dirs: Path, timeout: float) -> float:
    """Execute ``path`` and write it back with its outputs; the seconds it took. Raises on a failing cell or a
    timeout, and then leaves the file as it was."""
    nb = nbformat.read(path, as_version=4)
    kernelspec = nb.metadata.get("kernelspec")
    # The async manager: with a blocking one, nbclient (0.10, 0.11) waits past the timeout for the reply.
    km = AsyncKernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)])
    )
    start = time.monotonic()
    deadline = start + timeout
    client = nbclient.NotebookClient(
        nb,
        km=km,
        kernel_name=KERNEL_NAME,
        # the cells share the notebook's budget: each may take what the cells before it left
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    elapsed = time.monotonic() - start
    if kernelspec is not None:
        nb.metadata["kernelspec"] = kernelspec
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per notebook (default 1200)")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted((REPO / "notebooks").glob("*.ipynb"))
    if not paths:
        print("no notebooks to run", file=sys.stderr)
        return 1
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        kernel_dirs = write_kernel_spec(Path(tmp))
        for path in paths:
            name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            print(f"{name}: running (timeout {args.timeout:.0f} s)…", flush=True)
            try:
                elapsed = run_notebook(path, kernel_dirs, args.timeout)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
                failed.append(str(name))
                print(f"{name}: FAILED, left unchanged\n{error}", file=sys.stderr, flush=True)
                continue
            print(f"{name}: executed in {elapsed:.1f} s, outputs saved", flush=True)
            for repeat in repeated_figures(nbformat.read(path, as_version=4)):
                print(f"{name}: {repeat} of the same figure (see this script's docstring)", flush=True)
    if failed:
        print(f"{len(failed)} of {len(paths)} notebooks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
