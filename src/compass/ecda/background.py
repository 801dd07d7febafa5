"""The service's background parts (the drift monitor, the notifier) as daemon threads."""

from __future__ import annotations

import threading


class BackgroundThread:
    """Runs :meth:`_run` in a daemon thread until :meth:`stop`; :meth:`wake` makes the
    loop look now instead of at its next poll (``_run`` waits on ``self._wake``)."""

    thread_name = "compass-background"

    def __init__(self) -> None:
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        raise NotImplementedError
