"""One create-rate limiter per provider account and process, shared by every page thread.

Replicate and fal both answer a create above the account's limit with HTTP 429 and say when to come back
(a `Retry-After` header; Replicate's body also says "Your rate limit resets in ~58s"). Twelve page threads that
each back off on their own keep colliding with the limit and burn their attempts on 429s, so the book fails
although nothing was wrong with it. Here every thread takes its turn from one limiter:

- a 429 closes the gate for everyone until the server's hint has passed (never a shorter, capped wait), and
  doubles the spacing kept between creates afterwards; only the first 429 of a burst counts, and a hint of 0
  ("come back now") closes nothing;
- each create that is accepted halves the spacing, so the limiter speeds up again as soon as creates go through;
- a 429 costs the page nothing: it is not one of its attempts (generation.py), only time.

A 429 is never billed, so waiting is always cheaper than failing the book; the job's own deadline still bounds it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

DEFAULT_RETRY_AFTER_S = 5.0  # a 429 without a hint: wait this long before anyone creates again
MIN_SPACING_S = 0.25  # the spacing a first 429 starts from
MAX_SPACING_S = 60.0  # one create a minute: the lowest limit either service documents for an account in good standing


class RateLimiter:
    """Paces creates: `acquire()` before each, `throttled()` on a 429, `accepted()` after a create went through."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._closed_until = 0.0  # nobody creates before this (the server's last hint)
        self._next_slot = 0.0  # when the next create may go, keeping `spacing` between creates
        self.spacing_s = 0.0  # learnt from 429s; 0 = no limit seen yet
        self.throttles = 0

    def acquire(self, stop: threading.Event | None = None, latest: float | None = None) -> float:
        """Wait for this thread's turn; returns the seconds waited.

        `latest` (monotonic) is the caller's deadline: a turn later than that raises TimeoutError at once
        instead of sleeping past it. `stop` set while waiting raises InterruptedError.
        """
        with self._lock:
            now = self._clock()
            slot = max(now, self._closed_until, self._next_slot)
            if latest is not None and slot > latest:
                raise TimeoutError(f"the provider's rate limit allows the next create in {slot - now:.0f}s, "
                                   "after this job's deadline")
            self._next_slot = slot + self.spacing_s
        waited = slot - now
        while True:
            remaining = slot - self._clock()
            if remaining <= 0:
                return waited
            if stop is not None and stop.is_set():
                raise InterruptedError("the run is stopping")
            self._sleep(min(remaining, 0.5))

    def throttled(self, retry_after_s: float | None) -> float:
        """A create was answered 429: close the gate for everyone until the hint passes; returns that wait."""
        wait = DEFAULT_RETRY_AFTER_S if retry_after_s is None else max(0.0, retry_after_s)
        with self._lock:
            now = self._clock()
            self.throttles += 1
            if wait > 0 and now >= self._closed_until:
                # News only while the gate was open: the other threads' 429s from the same burst say the same thing,
                # and doubling for each of them would slow the book to one create a minute.
                self.spacing_s = min(MAX_SPACING_S, max(MIN_SPACING_S, self.spacing_s * 2))
            self._closed_until = max(self._closed_until, now + wait)
            self._next_slot = max(self._next_slot, self._closed_until)
        return wait

    def accepted(self) -> None:
        with self._lock:
            self.spacing_s = self.spacing_s / 2 if self.spacing_s > MIN_SPACING_S else 0.0


_LIMITERS: dict[str, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(account: str) -> RateLimiter:
    """The process's limiter for one provider account (its family and endpoint: one key's limit)."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(account)
        if limiter is None:
            limiter = _LIMITERS[account] = RateLimiter()
        return limiter
