"""A one-line progress display for long commands, shown only on a terminal."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """`label [#####.....]  42%  detail`, redrawn in place; silent when out is not a TTY."""

    WIDTH = 30

    def __init__(self, out: TextIO, label: str, total: float):
        self.out, self.label, self.total = out, label, total
        self.enabled = out.isatty()
        self.last_draw = 0.0

    def update(self, done: float, detail: str = "") -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last_draw < 0.2:
            return
        self.last_draw = now
        fraction = min(1.0, done / self.total) if self.total else 0.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.out.write(f"\r{self.label} [{bar}] {fraction:4.0%}  {detail}\033[K")
        self.out.flush()

    def done(self) -> None:
        if self.enabled:
            self.out.write("\r\033[K")
            self.out.flush()
