"""A fake clock for the code that takes its time as a function (``clock=``, ``monotonic=``)."""

from __future__ import annotations


class FakeClock:
    """A clock that stands still until the test moves it.

    Pass the clock itself where a ``clock`` or ``monotonic`` function is expected: calling it
    returns :attr:`now`. It starts at 1000.0, not 0, so no code can mistake the start for unset.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """Return the current time."""
        return self.now

    def tick(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds
