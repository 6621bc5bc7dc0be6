"""Progress lines for long loops: "what: done/total unit, rate unit/s, ETA 1m05s", at most one every
few seconds. Standard library only, so every package may use it."""
from __future__ import annotations

import time
from typing import Callable


def format_seconds(seconds: float) -> str:
    """A duration for people: 0m42s, 12m05s, 1h02m."""
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Progress of a loop over `total` items, counted from when the Progress is made.

    `update(done)` prints a line when `every_s` seconds have passed since the start or the last
    line, and never for the last item (the caller sums the loop up itself). `log` is called as
    `log(line, flush=True)`; print by default, e.g. `functools.partial(print, file=sys.stderr)`.
    """

    def __init__(self, total: int, what: str, unit: str = "images", every_s: float = 10.0,
                 log: Callable[..., object] = print,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.what, self.unit, self.every_s = total, what, unit, every_s
        self.log, self.clock = log, clock
        self.start = self.last = clock()

    def line(self, done: int, note: str = "", now: float | None = None) -> str:
        """"what: done/total unit, rate unit/s, ETA t[, note]" at `now` (default: the clock's)."""
        now = self.clock() if now is None else now
        rate = done / max(now - self.start, 1e-9)
        eta = format_seconds((self.total - done) / rate) if rate > 0 else "unknown"
        shown = f"{rate:.2f}" if rate < 10 else f"{rate:.1f}"
        return (f"{self.what}: {done}/{self.total} {self.unit}, {shown} {self.unit}/s, ETA {eta}"
                + (f", {note}" if note else ""))

    def update(self, done: int, note: str = "") -> bool:
        """Print the line if it is time (see the class); returns whether it printed."""
        now = self.clock()
        if done >= self.total or now - self.last < self.every_s:
            return False
        self.last = now
        self.log(self.line(done, note, now), flush=True)
        return True
