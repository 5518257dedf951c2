"""The README's quick start runs as written: its python blocks, pasted into one file, in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _section_python_blocks(markdown: str, heading: str) -> list[str]:
    """The ```python blocks of the section under ``## heading`` (up to the next ``## `` heading)."""
    section = markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


def test_the_section_parser_finds_the_blocks():
    text = "# t\n## A\n```python\na = 1\n```\ntext\n```python\nb = 2\n```\n## B\n```python\nc = 3\n```\n"
    assert _section_python_blocks(text, "A") == ["a = 1\n", "b = 2\n"]


def test_quick_start_runs_as_written(tmp_path):
    blocks = _section_python_blocks((REPO / "README.md").read_text(encoding="utf-8"), "Quick start")
    assert blocks, "no ```python block under '## Quick start' in README.md"
    script = tmp_path / "quick_start.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": pythonpath}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "trace.png").stat().st_size > 0


def test_structure_section_runs_as_written(tmp_path):
    """The README's second example (restriction, data restriction, bits, BIF, λ itself) runs as pasted."""
    heading = "Structure, influence, λ itself, development"
    blocks = _section_python_blocks((REPO / "README.md").read_text(encoding="utf-8"), heading)
    assert blocks, f"no ```python block under '## {heading}' in README.md"
    script = tmp_path / "structure.py"
    check = "\nassert res.num_params == 2 and bif.covariance.shape == (8, 8) and lam.llc > 0\n"
    script.write_text("\n".join(blocks) + check, encoding="utf-8")
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": pythonpath}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
