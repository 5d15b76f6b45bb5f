"""The wall time of every attempt of a run, kept in its run directory: a killed attempt's time still counts.

Each attempt (a first launch, a requeue after a time limit, a relaunch after a kill) appends
its start and keeps a heartbeat fresh every ``interval_s``; a SIGKILL loses at most that
much. The compute record of a run sums the attempts no earlier record has counted.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from mcbio.files import write_json_atomic

ATTEMPTS = "attempts.json"


class AttemptClock:
    def __init__(self, out_dir: Path, interval_s: float = 5.0) -> None:
        self.path = Path(out_dir) / ATTEMPTS
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _read(self) -> list[dict]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return []

    def _touch(self) -> list[dict]:
        with self._lock:
            attempts = self._read()
            if attempts:
                attempts[-1]["last_seen"] = time.time()
                write_json_atomic(self.path, attempts, indent=1)
            return attempts

    def start(self) -> "AttemptClock":
        now = time.time()
        with self._lock:
            write_json_atomic(self.path, [*self._read(), {"started": now, "last_seen": now, "recorded": False}], indent=1)
        self._thread = threading.Thread(target=self._beat, name="attempt-clock", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._touch()

    def unrecorded(self) -> tuple[float, int]:
        """(seconds, attempts) of the attempts no record has counted yet, this one up to now included."""
        pending = [a for a in self._touch() if not a.get("recorded")]
        return sum(a["last_seen"] - a["started"] for a in pending), len(pending)

    def mark_recorded(self) -> None:
        with self._lock:
            write_json_atomic(self.path, [{**a, "recorded": True} for a in self._read()], indent=1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
