"""Notifications off the write path: a run's outbox.

One Outbox per run, made with the run's deadline (a time.monotonic() value, or None):

    with Outbox(deadline) as outbox:
        ...
        outbox.post(job, check)       # after each stored check: returns at once
        ...
        notices = outbox.close()      # at the end of the run: {job name: notice}

`post()` works out the messages the check calls for (messages.messages_for, on the caller's
thread: small texts, no input/output) and queues one delivery per message and URL. Deliveries
run on a small pool of daemon threads, started as work comes (none when nothing is sent).

Limits, so that notifications never push a run past its deadline (the Lambda timeout, the
Scheduler's 10-minute slot):

- WORKERS deliveries at a time (8). Sending is waiting on a server, so a few threads do the
  work of many: 500 messages to a webhook answering in 100 ms take about 7 s instead of 53
  (bench/RESULTS.md). More would mostly hit the receiving service harder: jobs usually share one
  SMTP server or webhook, and mail servers and chat services limit concurrent connections and
  requests per second (Slack about one message a second per webhook, SES 14 a second by
  default). Eight threads cost a few MB in the smallest Lambda.
- Each message has MESSAGE_TIMEOUT (10 s), less when the deadline is nearer: it caps the
  plugin's socket timeouts (messages.deliver), and past it the outbox stops waiting for the
  message. The thread still stuck in it (a server that trickles bytes) is a daemon thread,
  abandoned, never waited for, and never keeps the process from exiting.
- A URL that used up a whole timeout is not tried again in the same run: 500 changes to a
  hanging SMTP server cost one timeout, not 500 / WORKERS of them.
- A message that cannot start with at least MIN_SEND_TIME left before the deadline is not
  sent; `close()` returns by the deadline less CLOSE_MARGIN, whatever is still queued or in
  flight.

A notice is one line for the job's result, without secrets: "notification failed:
json://hooks.example.org: not delivered (see log)", "notification not sent: the run's time ran
out", or both joined by "; ". The check is already stored: a notice never changes an outcome.
"""

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass

from shared.core import log
from shared.notify import messages

logger = logging.getLogger(__name__)

WORKERS = 8  # deliveries at a time (see above)
MESSAGE_TIMEOUT = 10.0  # seconds per message, at most
CLOSE_MARGIN = 1.0  # close() returns at least this long before the run's deadline
SEND_MARGIN = 0.5  # a message's own limit ends this long before close() gives up (so it is counted)
MIN_SEND_TIME = 1.0  # a message with less time than this left is not started
HARD_STOP_SLACK = 0.25  # past its timeout, a message's socket timeouts get this long to end it
NOT_SENT = "notification not sent: the run's time ran out"


@dataclass(frozen=True)
class _Delivery:
    job: str
    url: str
    message: messages.Message


class Outbox:
    """Sends a run's notifications in the background; see the module's docstring."""

    def __init__(self, deadline: float | None, workers: int = WORKERS, timeout: float = MESSAGE_TIMEOUT):
        if workers < 1 or not timeout > 0:
            raise ValueError("an Outbox needs at least one worker and a positive timeout")
        self.deadline = deadline
        self.workers = workers
        self.timeout = timeout
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count()
        self._pending: dict[int, _Delivery] = {}  # queued or in flight
        self._failures: dict[str, dict[str, int]] = {}  # job -> {reason: the first delivery it came from}
        self._unsent: dict[str, int] = {}  # job -> messages not sent in time
        self._unresponsive: set[str] = set()  # URLs that used up a whole timeout in this run
        self._counts = {"sent": 0, "failed": 0, "not sent": 0}
        self._started = time.monotonic()
        self._notices: dict[str, str] | None = None  # set by close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # After an error in the run, its results are lost anyway: do not wait for messages.
        self._close(wait=exc_type is None)

    # --- the run's side ---------------------------------------------------------------------

    def post(self, job, check: messages.Check) -> str | None:
        """Queue what this stored check calls for; returns at once, with why a change sends
        nothing (None when it does, or nobody is to be told), and never raises for a
        notification's sake (a failure becomes the job's notice)."""
        if self._notices is not None:
            raise RuntimeError("Outbox.post() after close()")
        try:
            urls = messages.urls_for(job)
            outgoing, why = messages.plan(job, check) if urls else ((), None)  # no diff for nobody
        except Exception as exc:  # a bug here must not stop the run's other targets
            logger.exception("%s: notifications failed", job.name)
            with self._lock:
                self._record_failure(job.name, log.redact(str(exc) or type(exc).__name__), -1)
            return None
        for message in outgoing:
            for url in urls:
                self._put(_Delivery(job.name, url, message))
        return why

    def close(self) -> dict[str, str]:
        """Wait for what is queued, up to the deadline less CLOSE_MARGIN (without a deadline,
        until each message is sent or has timed out), and return {job name: notice} for the
        jobs whose notifications failed or were not sent in time. Safe to call again."""
        return self._close(wait=True)

    def _close(self, wait: bool) -> dict[str, str]:
        with self._lock:
            if self._notices is None:
                limit = None if self.deadline is None else self.deadline - CLOSE_MARGIN
                if wait:
                    self._idle.wait_for(lambda: not self._pending,
                                        None if limit is None else max(0.0, limit - time.monotonic()))
                for delivery in self._pending.values():  # given up on: queued, or in flight
                    self._unsent[delivery.job] = self._unsent.get(delivery.job, 0) + 1
                    self._counts["not sent"] += 1
                self._pending.clear()
                self._notices = self._build_notices()
                for _ in self._threads:  # idle workers end; busy ones end after their message
                    self._queue.put(None)
                self._log_summary()
            return dict(self._notices)

    # --- the pool's side --------------------------------------------------------------------

    def _put(self, delivery: _Delivery) -> None:
        with self._lock:
            key = next(self._ids)
            self._pending[key] = delivery
            if len(self._threads) < min(self.workers, len(self._pending)):
                thread = threading.Thread(target=self._work, name=f"notify-{len(self._threads) + 1}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put((key, delivery))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            key, delivery = item
            try:
                outcome, reason = self._attempt(delivery)
            except Exception as exc:  # never lose a worker: the pool would shrink for the run
                logger.exception("%s: notification failed", delivery.job)
                outcome, reason = "failed", f"{messages.service_name(delivery.url)}: {log.redact(str(exc))}"
            self._finish(key, delivery, outcome, reason)

    def _attempt(self, delivery: _Delivery) -> tuple[str, str | None]:
        service = messages.service_name(delivery.url)
        with self._lock:
            if self._notices is not None:  # closed: close() has counted it
                return "not sent", None
            if delivery.url in self._unresponsive:
                return "failed", f"{service}: not tried, it did not answer in time earlier in this run"
        limit = self.timeout
        if self.deadline is not None:
            limit = min(limit, self.deadline - CLOSE_MARGIN - SEND_MARGIN - time.monotonic())
        if limit < MIN_SEND_TIME:
            return "not sent", None
        started = time.monotonic()
        reason, finished = _deliver_within(delivery.url, delivery.message, limit)
        if reason is None:
            return "sent", None
        if not finished or time.monotonic() - started >= 0.9 * limit:  # its socket timeout, or ours
            with self._lock:
                self._unresponsive.add(delivery.url)
        return "failed", reason

    def _finish(self, key: int, delivery: _Delivery, outcome: str, reason: str | None) -> None:
        with self._lock:
            if self._pending.pop(key, None) is None:  # close() gave up on it already
                return
            self._counts[outcome] += 1
            if outcome == "failed":
                self._record_failure(delivery.job, reason, key)
            elif outcome == "not sent":
                self._unsent[delivery.job] = self._unsent.get(delivery.job, 0) + 1
            if not self._pending:
                self._idle.notify_all()

    def _record_failure(self, job: str, reason: str, key: int) -> None:
        logger.warning("%s: notification failed: %s", job, reason)
        reasons = self._failures.setdefault(job, {})
        reasons[reason] = min(key, reasons.get(reason, key))

    def _build_notices(self) -> dict[str, str]:
        notices = {}
        for job in dict.fromkeys([*self._failures, *self._unsent]):
            parts = []
            if self._failures.get(job):  # in the order the messages were posted, whatever ended first
                reasons = self._failures[job]
                parts.append("notification failed: " + "; ".join(sorted(reasons, key=reasons.get)))
            if self._unsent.get(job):
                parts.append(NOT_SENT)
            notices[job] = log.redact("; ".join(parts))
        return notices

    def _log_summary(self) -> None:
        unsent = self._counts["not sent"]
        if unsent:
            logger.warning("%d notification(s) not sent: the run's time ran out", unsent)
        if any(self._counts.values()):
            logger.debug("notifications: %d sent, %d failed, %d not sent, in %.1f s",
                         self._counts["sent"], self._counts["failed"], unsent, time.monotonic() - self._started)


def _deliver_within(url: str, message: messages.Message, limit: float) -> tuple[str | None, bool]:
    """messages.deliver() with its socket timeouts capped at `limit`, on a thread of its own that
    is waited for `limit` at most (and a little slack for the socket timeouts to act). Returns
    (reason or None, finished): a thread still running then is abandoned."""
    outcome: list[str | None] = []
    sender = threading.Thread(target=lambda: outcome.append(messages.deliver(url, message, limit)),
                              name="notify-send", daemon=True)
    sender.start()
    sender.join(limit + HARD_STOP_SLACK)
    if sender.is_alive():
        logger.debug("gave up waiting for %s after %.1f s; its thread is abandoned", messages.service_name(url), limit)
        return f"{messages.service_name(url)}: no answer within {limit:.3g} s", False
    if not outcome:  # deliver() catches every Exception; this was something else
        return f"{messages.service_name(url)}: sending failed (see log)", True
    return outcome[0], True
