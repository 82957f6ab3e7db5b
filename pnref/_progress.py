"""A tiny text progress bar written to stderr (no third-party dependency).

Support layer: used by training (`pnref.nn.train`) and the experiments alike.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####.....] 50/100 loss 0.1234  12.3 s, ETA 12 s`` redrawn in place.

    The estimated time left is ``elapsed / count * (total - count)``. On a terminal the line
    is redrawn with a carriage return; when stderr is not a terminal (a CI log, a pipe) a new
    line is written about every 10 % instead, so logs stay readable.

    Parameters
    ----------
    total : int
        Number of steps.
    label : str
        Text before the bar.
    stream : text stream, default sys.stderr
    width : int
        Characters in the bar.
    enabled : bool
        When False nothing is written.
    """

    def __init__(self, total: int, label: str = "", *, stream: TextIO | None = None,
                 width: int = 30, enabled: bool = True) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.count = 0
        self._is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._redraw_every = max(self.total // (100 if self._is_tty else 10), 1)
        self._start = time.perf_counter()

    def update(self, steps: int = 1, info: str = "") -> None:
        """Advance by ``steps``; redraw (about 100 times in all) with ``info`` after the counts."""
        self.count = min(self.count + steps, self.total)
        if not self.enabled or (self.count % self._redraw_every and self.count < self.total):
            return
        filled = self.width * self.count // self.total
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        left = elapsed / self.count * (self.total - self.count) if self.count else 0.0
        text = (f"{self.label} [{bar}] {self.count}/{self.total} {info} {elapsed:6.1f} s, "
                f"ETA {_format_seconds(left)}")
        self.stream.write(f"\r{text}" if self._is_tty else f"{text}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        if self.enabled and self._is_tty:
            self.stream.write("\n")
            self.stream.flush()


def _format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
