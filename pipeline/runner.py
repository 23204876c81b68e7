"""Running the step: one market at a time over all processes, failures contained and retried.

A live stream runs its market's step in a StepThread, so reading the
exchange socket never waits on features or models; a max-speed replay calls
Guard.run itself after each batch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import connection, connections
from django.db.models import F
from django.utils import timezone

from core import prometheus
from core.db import out_of_resources
from markets.models import Market
from markets.streams.sources.base import backoff_delay
from pipeline.models import StepStatus
from pipeline.step import MarketStep, StepStats

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x7374_6570  # first key of the market's advisory lock; the second is its id
BUSY_RETRY_S = 0.5  # another process holds the market's lock: look again this soon


@contextlib.contextmanager
def market_lock(market: Market) -> Iterator[bool]:
    """A PostgreSQL session advisory lock per market: True if this connection holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, market.pk])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held and connection.is_usable():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, market.pk])


def drop_broken_connection() -> None:
    """After a database outage this thread's connection is dead: drop it, the next query reconnects."""
    if not connection.in_atomic_block and connection.connection is not None and not connection.is_usable():
        connection.close()


class Guard:
    """Runs a market's step under its lock, records the outcome and backs off after failures.

    Never raises: a failure is logged with the market and the windows, counted
    (StepStatus), and retried after a bounded exponential backoff.
    """

    def __init__(self, market: Market):
        self.market = market
        self.failures = 0  # consecutive, in this process
        self.retry_at: float | None = None  # monotonic time of the next attempt, when one is due
        self.status_exists = False
        self.outage_since: float | None = None  # monotonic start of a failure for want of disk or memory
        self.last_error = ""  # of the latest run, if it failed (known here even if it cannot be recorded)

    def retry_in(self) -> float | None:
        """Seconds until a retry is due; None when nothing waits for one."""
        return None if self.retry_at is None else max(0.0, self.retry_at - time.monotonic())

    def run(self, step: MarketStep) -> StepStats | None:
        started = time.perf_counter()
        try:
            with market_lock(self.market) as held:
                if not held:
                    self.retry_at = time.monotonic() + BUSY_RETRY_S
                    prometheus.STEP_RUNS.labels(self.market.name, "busy").inc()
                    return None
                stats = step.run()
        except Exception as exc:
            prometheus.STEP_RUNS.labels(self.market.name, "failed").inc()
            self._failed(exc)
            return None
        prometheus.step_done(self.market.name, vars(stats), time.perf_counter() - started)
        self.failures, self.retry_at, self.last_error = 0, None, ""
        if self.outage_since is not None:
            log.warning("%s: pipeline step back after %.1fs", self.market, time.monotonic() - self.outage_since)
            self.outage_since = None
        self._record(
            last_success_at=timezone.now(),
            done_until=step.features_until,
            predicted_until=step.predicted_until,
            consecutive_failures=0,
            **{name: F(name) + value for name, value in vars(stats).items() if value},
        )
        return stats

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        delay = backoff_delay(self.failures, settings.STEP_RETRY_BASE_S, settings.STEP_RETRY_MAX_S)
        self.retry_at = time.monotonic() + delay
        self.last_error = f"{type(exc).__name__}: {exc}"
        if cause := out_of_resources(exc):
            # Not a bug in the step: one line when it starts, none per retry, one when the step succeeds again.
            if self.outage_since is None:
                self.outage_since = time.monotonic()
                log.error("%s: pipeline step failed: %s; retrying with backoff", self.market, cause)
        else:
            self._log_failure(exc, delay)
        drop_broken_connection()
        self._record(
            failures=F("failures") + 1,
            consecutive_failures=F("consecutive_failures") + 1,
            last_error=self.last_error[:2000],
            last_error_at=timezone.now(),
        )

    def _log_failure(self, exc: Exception, delay: float) -> None:
        log.error(
            "%s: pipeline step failed (%s: %s); retry %d in %.1fs",
            self.market,
            type(exc).__name__,
            exc,
            self.failures,
            delay,
            exc_info=not isinstance(exc.__cause__ or exc, OSError),
        )

    def _record(self, **values) -> None:
        """Update the market's StepStatus; a database outage only costs the record."""
        try:
            if not self.status_exists:
                StepStatus.objects.get_or_create(market=self.market)
                self.status_exists = True
            StepStatus.objects.filter(market=self.market).update(last_run_at=timezone.now(), **values)
        except Exception as exc:
            if self.outage_since is None or not out_of_resources(exc):  # else the outage's one line said it
                log.warning("%s: step status not recorded: %s", self.market, exc)
            drop_broken_connection()


class StepThread:
    """One market's step in a background thread, woken after each ingest commit.

    It runs once at start (catching up on whatever an earlier process left),
    then whenever woken, and on its own when a retry is due.
    """

    def __init__(self, market: Market, skip_stale: bool = True):
        self.step = MarketStep(market, skip_stale=skip_stale)
        self.guard = Guard(market)
        self.runs = 0  # attempts finished (tests wait on it)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"step {market}", daemon=True)

    def start(self) -> StepThread:
        self._wake.set()
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            while True:
                self._wake.wait(self.guard.retry_in())
                if self._stopping.is_set():
                    return
                self._wake.clear()
                delay = self.guard.retry_in()
                if delay and self._stopping.wait(delay):
                    return
                self.guard.run(self.step)
                self.runs += 1
        finally:
            connections.close_all()
