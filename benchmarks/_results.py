"""Write one ``## Section`` of benchmarks/RESULTS.md, leaving the other sections alone."""

from __future__ import annotations

import pathlib
import re

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, body: str) -> None:
    """Replace (or append) the section that starts with ``## {heading}`` up to the next ``## `` heading."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {heading}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")


def run_child(code: str, spec: dict, cwd, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh Python process (compilation included in whatever it times) with ``spec`` as JSON
    in ``sys.argv[1]`` (and ``env`` as its environment, if given); it prints its result as a line
    ``RESULT{json}``, which is returned."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, cwd=cwd, env=env, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT") :])
    raise RuntimeError(f"child failed: {proc.stderr[-2000:]}")
