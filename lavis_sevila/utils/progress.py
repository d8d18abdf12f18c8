"""Progress of a long loop, readable on a terminal and in a log file.

On a terminal: a tqdm bar (redrawn in place, with ETA and the latest loss / lr).
Anywhere else -- a file, a pipe, a CI log -- a redrawn bar becomes one endless line of
carriage returns, so instead one plain log line every ``every_steps`` steps, or sooner
when ``every_seconds`` have passed since the last line, plus one line at the end:

    train finetune_answerer: step 20/60 (33%) | loss 1.386 | lr 0.0001 | 14.2 samples/s | elapsed 0:00:05 | ETA 0:00:10

The choice follows ``stream.isatty()``; ``LAVIS_SEVILA_PROGRESS=bar|lines|off`` forces it.
Lines go through :mod:`logging` (logger ``lavis_sevila.progress``), so they carry the
run's timestamps and rank prefix and land wherever the logs go.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Optional, TextIO, TypeVar

logger = logging.getLogger("lavis_sevila.progress")

EVERY_SECONDS = 60.0  # a line at least this often in line mode, however slow the steps
MODES = ("bar", "lines", "off")
T = TypeVar("T")


def choose_mode(stream: Optional[TextIO]) -> str:
    forced = os.environ.get("LAVIS_SEVILA_PROGRESS", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"LAVIS_SEVILA_PROGRESS={forced!r}; use one of {', '.join(MODES)}")
        return forced
    isatty = getattr(stream, "isatty", None)
    return "bar" if callable(isatty) and isatty() else "lines"


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Counts steps (and samples) of one loop and reports them in the mode the stream suits."""

    def __init__(
        self,
        total: Optional[int],
        desc: str,
        *,
        initial: int = 0,
        enabled: bool = True,
        unit: str = "step",
        every_steps: int = 10,
        every_seconds: float = EVERY_SECONDS,
        stream: Optional[TextIO] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if every_steps < 1:
            raise ValueError(f"progress every_steps must be >= 1, got {every_steps}")
        self.total, self.desc, self.unit = total, desc, unit
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.done = self.initial = initial
        self.samples = 0
        self.fields: dict[str, Any] = {}
        self._clock = clock
        self._started = self._last_line = clock()
        self._last_step = initial
        stream = sys.stderr if stream is None else stream
        self.mode = choose_mode(stream) if enabled else "off"
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=True)

    def update(self, n: int = 1, samples: int = 0, **fields: Any) -> None:
        """``n`` more steps covering ``samples`` samples; ``fields`` (loss, lr, ...) are shown."""
        self.done += n
        self.samples += samples
        self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix({k: _value(v) for k, v in self.fields.items()}, refresh=False)
        elif self.mode == "lines":
            now = self._clock()
            if self.done // self.every_steps > self._last_step // self.every_steps or now - self._last_line >= self.every_seconds:
                self._line(now)

    def close(self) -> None:
        """End the loop: close the bar, or write the last line if the last step had none."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self.done != self._last_step:
            self._line(self._clock())
        self.mode = "off"

    def line(self) -> str:
        """The line-mode report of where the loop is now."""
        elapsed = self._clock() - self._started
        counted = self.done - self.initial
        parts = [f"{self.desc}: {self.unit} {self.done}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts += [f"{k} {_value(v)}" for k, v in self.fields.items()]
        if elapsed > 0 and self.samples:
            parts.append(f"{self.samples / elapsed:.1f} samples/s")
        elif elapsed > 0 and counted:
            parts.append(f"{counted / elapsed:.2f} {self.unit}s/s")
        parts.append(f"elapsed {_clock(elapsed)}")
        if self.total and counted and elapsed > 0:
            remaining = max(self.total - self.done, 0) * elapsed / counted
            parts.append(f"ETA {_clock(math.ceil(remaining))}")
        return " | ".join(parts)

    def _line(self, now: float) -> None:
        logger.info(self.line())
        self._last_line, self._last_step = now, self.done

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(
    iterable: Iterable[T],
    desc: str,
    *,
    enabled: bool = True,
    total: Optional[int] = None,
    unit: str = "batch",
    samples: Optional[Callable[[T], int]] = None,
    **options: Any,
) -> Iterator[T]:
    """Iterate ``iterable`` with a :class:`Progress` (``samples(item)`` counts its samples)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, enabled=enabled, unit=unit, **options) as progress:
        for item in iterable:
            yield item
            progress.update(1, samples=int(samples(item)) if samples is not None else 0)
