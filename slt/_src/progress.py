"""Progress of long runs, reported between chunks: a line redrawn in place on a terminal, a plain line per
tenth of the run otherwise (never a flood of carriage returns in a log file), with an ETA that leaves out the
first chunk, which includes compilation."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Progress per chunk: a bar redrawn in place on a terminal, a plain line per ~10% otherwise. The ETA
    counts only chunks after the first (the first includes compilation, and says so)."""

    def __init__(self, enabled: bool, total: int, description: str, unit: str = "steps", first: str = "chunk"):
        self.enabled, self.total, self.description, self.unit = enabled, total, description, unit
        self.tty = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.start = time.perf_counter()
        self.first_done: float | None = None
        self.first_steps = 0
        self.last_decile = -1
        if enabled:
            self._write(f"{description}: compiling and running the first {first}…", final=not self.tty)

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done, self.first_steps = now, done
        frac = done / self.total
        rate = (done - self.first_steps) / (now - self.first_done) if now > self.first_done else 0.0
        eta = f", ETA {(self.total - done) / rate:.0f} s" if rate > 0 and done < self.total else ""
        text = f"{self.description}: {done}/{self.total} {self.unit} ({100 * frac:.0f}%), {now - self.start:.1f} s{eta}"
        decile = int(10 * frac)
        if self.tty:
            self._write(text, final=done >= self.total)
        elif decile > self.last_decile or done >= self.total:
            self.last_decile = decile
            self._write(text, final=True)

    def stop(self, why: str) -> None:
        """End the report of a run that stopped before its total, saying why."""
        if self.enabled:
            self._write(f"{self.description}: {why}, {time.perf_counter() - self.start:.1f} s", final=True)
