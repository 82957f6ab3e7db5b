"""A tiny text progress bar written to stderr (no third-party dependency).

Support layer: used by training (`pnref.nn.train`) and the experiments alike.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####.....] 50/100 loss 0.1234  12.3 s`` redrawn in place with a carriage return.

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
        self._redraw_every = max(self.total // 100, 1)
        self._start = time.perf_counter()

    def update(self, steps: int = 1, info: str = "") -> None:
        """Advance by ``steps``; redraw (about 100 times in all) with ``info`` after the counts."""
        self.count = min(self.count + steps, self.total)
        if not self.enabled or (self.count % self._redraw_every and self.count < self.total):
            return
        filled = self.width * self.count // self.total
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        self.stream.write(
            f"\r{self.label} [{bar}] {self.count}/{self.total} {info} {elapsed:6.1f} s"
        )
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
