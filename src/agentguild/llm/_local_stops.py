"""Stop sequences over streamed text: emit as early as possible, never a stop's text."""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Cuts streamed text at the first stop sequence, holding back a possible prefix of one.

    "First" means first to be complete, as generation would halt there (ties: the one that
    starts earlier), so the output is the same however the text is chunked.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add `text`; return what is now safe to emit (nothing once a stop was seen)."""
        if self.stopped:
            return ""
        buffer = self._held + text
        cut = first_stop(buffer, self._stops)
        if cut is not None:
            self.stopped = True
            self._held = ""
            return buffer[:cut]
        keep = max((_overlap(buffer, stop) for stop in self._stops), default=0)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """The held-back text, once the stream ended without completing a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where `text` is cut: the start of the stop sequence that completes first, or None."""
    found = [(start + len(stop), start) for stop in stops if (start := text.find(stop)) >= 0]
    return min(found)[1] if found else None


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0
