"""Execute every ``notebooks/*.ipynb`` end to end; any cell error fails the test.

The kernel is the interpreter running pytest: a kernel spec for ``sys.executable`` is written to a
temporary directory and handed to the kernel manager directly, so no other Python's ``python3`` kernel
(a user-level or system-wide spec) can be picked up. The kernel's environment gets ``MPLBACKEND=Agg`` and
the repository root on ``PYTHONPATH`` (so ``import slt`` works from a plain checkout too).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "slt-test-python"


@pytest.fixture(scope="module")
def kernel_spec_dir(tmp_path_factory) -> Path:
    """A kernel spec dir whose only kernel runs ``sys.executable -m ipykernel_launcher``."""
    root = tmp_path_factory.mktemp("kernels")
    spec_dir = root / KERNEL_NAME
    spec_dir.mkdir()
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor} (slt tests)",
        "language": "python",
        "env": {"MPLBACKEND": "Agg", "PYTHONPATH": pythonpath},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def _cell_errors(nb) -> list[str]:
    errors = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    return errors


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, kernel_spec_dir: Path):
    nb = nbformat.read(path, as_version=4)
    # A last cell reports the kernel's interpreter, to check it is the one running pytest.
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable, end='')"))
    km = KernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_spec_dir)]),
    )
    assert km.kernel_spec.argv[0] == sys.executable
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=600,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    # Raises nbclient.exceptions.CellExecutionError (with the traceback) on the first failing cell.
    client.execute()
    elapsed = time.perf_counter() - start
    assert not _cell_errors(nb), _cell_errors(nb)
    kernel_python = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    assert kernel_python == sys.executable, f"kernel ran {kernel_python!r}, pytest runs {sys.executable!r}"
    print(f"{path.name}: executed in {elapsed:.1f} s with {sys.executable}")
