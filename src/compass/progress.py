"""Progress of long steps, in one place: a bar on a terminal, a line now and then in a log.

Embedding, the leak filter, training, evaluation, the transfer probe and the monitor's
replay all report through :func:`progress_bar` (usually by way of
:meth:`compass.runtime.Runtime.bar`), so a step that runs for minutes says how far it
is whether the output is a terminal or a job's log file.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LINE_EVERY = 60.0  # seconds between progress lines in a log


def progress_bar(show: bool | None, total: int | None, desc: str, unit: str, *,
                 enabled: bool = True, min_total: int = 0, every: float | None = None,
                 stream: TextIO | None = None) -> Any:
    """A context manager with ``update(n)`` and ``set_postfix(**values)``.

    ``show``: ``True`` a tqdm bar, ``False`` nothing; ``None`` (auto) a bar when stderr is
    a terminal and ``total`` reaches ``min_total``, else a line every ``every`` seconds
    (default ``LINE_EVERY``; done/total, elapsed): a run in a job's log is not silent for
    minutes.
    ``enabled=False`` (e.g. a training rank other than the first) shows nothing.
    """
    from tqdm.auto import tqdm

    stream = stream or sys.stderr
    if enabled and show is None and not stream.isatty():
        return _Lines(total, desc, unit, LINE_EVERY if every is None else every, stream)
    on = enabled and (show if show is not None else (total or 0) >= min_total)
    return tqdm(total=total, desc=desc, unit=unit, disable=not on, file=stream)


def clock(seconds: float) -> str:
    """``12m05s``: elapsed time in progress lines."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class _Lines:
    """tqdm's interface, as a line every ``every`` seconds (and, if any was written, a last
    one for what came after it)."""

    def __init__(self, total: int | None, desc: str, unit: str, every: float, stream: TextIO) -> None:
        self.total, self.desc, self.unit, self.every, self.stream = total, desc, unit, every, stream
        self.n, self.postfix, self.shown = 0, "", None  # shown: n at the last line
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self.last >= self.every:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self.shown is not None and self.shown != self.n:
            self._line()

    def _line(self) -> None:
        self.last = time.perf_counter()
        of = f"/{self.total}" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit} ({clock(self.last - self.start)}{extra})",
              file=self.stream, flush=True)
        self.shown = self.n

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
