"""Progress reporting: a tqdm bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def log(message: str) -> None:
    """Print a status line to stderr (stdout stays clean for tables and JSON)."""
    print(message, file=sys.stderr, flush=True)


def on_terminal() -> bool:
    """True when stderr is an interactive terminal."""
    return sys.stderr.isatty()


class _LineProgress:
    """tqdm-like object that logs a line at most every ``interval`` seconds."""

    def __init__(self, total: int | None, desc: str, unit: str, interval: float = 10.0) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n = 0
        self.start = self.last = time.perf_counter()
        self.postfix = ""
        self.closed = False
        self.emitted_n = -1

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self._emit(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _emit(self, now: float) -> None:
        self.emitted_n = self.n
        rate = self.n / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        extra = f" {self.postfix}" if self.postfix else ""
        log(f"{self.desc}: {self.n}{of} {self.unit} ({rate:,.1f} {self.unit}/s){extra}")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.emitted_n != self.n:
                self._emit(time.perf_counter())

    def __enter__(self) -> "_LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(total: int | None, desc: str, unit: str = "it", disable: bool = False):
    """A context-managed progress object with ``update(n)`` and ``set_postfix_str``.

    On a terminal this is a tqdm bar; otherwise a logger that prints a line every 10 seconds
    and once at the end. ``disable=True`` silences both.
    """
    if on_terminal() or disable:
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True)
    return _LineProgress(total, desc, unit)


def track(iterable: Iterable[T], total: int | None, desc: str, unit: str = "it") -> Iterator[T]:
    """Iterate with a progress bar (terminal) or periodic log lines (non-terminal)."""
    with progress_bar(total, desc, unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)
