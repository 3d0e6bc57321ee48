"""`MicroBatcher` puts one worker thread in front of a `MultiTaskPredictor`: callers `submit`
prepared requests into a bounded queue and get a `concurrent.futures.Future`; the worker groups
what is queued (up to `max_batch_size` model rows, waiting at most `max_wait_ms` for more) into one
mixed batch. A request larger than one batch runs slice by slice, taking turns with the other
requests queued. Tokenization and answer formatting happen in the callers' threads.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .errors import QueueFullError, ShuttingDownError
from .predictor import MultiTaskPredictor
from .tasks import PreparedRequest


@dataclass(eq=False)
class _Job:
    request: PreparedRequest
    future: Future
    inputs: int
    # the features in the order they are run, shortest first: a large request's slices then pad
    # as little as the whole request sorted at once would
    order: list[int]
    rows_of: list[int]  # model rows of each feature, in `order`
    done: int = 0  # features of `order` computed so far
    values: dict[int, Any] = field(default_factory=dict)  # feature index -> its value
    accepted: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.done >= len(self.order)

    def ordered_values(self) -> list:
        return [self.values[f] for f in range(len(self.order))]


@dataclass(eq=False)
class _Slice:
    job: _Job
    start: int  # positions in job.order
    stop: int

    @property
    def rows(self) -> int:
        return sum(self.job.rows_of[self.start : self.stop])

    @property
    def features(self) -> list[int]:
        return self.job.order[self.start : self.stop]


class MicroBatcher:
    """One worker thread owning the model; a bounded queue of requests; one future per request.

    The worker takes the oldest request, then keeps taking queued requests while the batch has
    fewer than `max_batch_size` model rows, waiting up to `max_wait_ms` for more to arrive, and runs
    them all in one `compute_parts` (mixed tasks). A request with more rows than fit is cut at
    feature boundaries (a QA window, a multiple-choice input's choices stay together): the batch
    takes the slice that fits and the rest goes to the back of the queue once the batch has run,
    behind the requests that arrived meanwhile, so one large request cannot starve small ones (a
    small request waits for at most the batch running and the slices queued before it). The
    future is answered when its last slice has run. `max_queue` bounds the inputs accepted and not
    yet answered: past it `submit` raises QueueFullError. `close()` refuses new work, answers
    everything accepted, then stops the worker. `drain(within)` refuses new work and, `within`
    seconds later, fails the requests not finished yet with ShuttingDownError (a bounded
    shutdown). A request whose future was cancelled (its client left) is dropped when it reaches
    the front, also between the slices of a large one.
    """

    def __init__(
        self,
        predictor: MultiTaskPredictor,
        *,
        max_batch_size: int | None = None,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.predictor = predictor
        self.max_batch_size = max_batch_size or predictor.max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.max_queue = max_queue
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0  # inputs accepted and not yet answered
        self._closing = False
        self._deadline: float | None = None  # set by drain(): queued work not started by then is refused
        self._thread: threading.Thread | None = None
        self.stats = {
            "batches": 0,
            "mixed_batches": 0,
            "requests": 0,
            "rows": 0,
            "errors": 0,
            "cancelled": 0,
            "refused_at_shutdown": 0,
        }

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> MicroBatcher:
        with self._cond:
            if self._closing:
                raise ShuttingDownError("the batcher was closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ptuning-serve-worker", daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, answer every accepted one, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self, within: float | None = None) -> None:
        """Refuse new requests now; answer queued ones for `within` seconds, then fail those not
        started with ShuttingDownError (None: answer them all). Returns at once."""
        with self._cond:
            self._closing = True
            if within is not None:
                self._deadline = time.monotonic() + max(0.0, within)
            self._cond.notify_all()

    def __enter__(self) -> MicroBatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def pending(self) -> int:
        """Inputs accepted and not yet answered."""
        return self._pending

    # --- submitting ---------------------------------------------------------------------------

    def submit(self, request: PreparedRequest) -> Future:
        """Queue a prepared request; the future gives `compute`'s output for it."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[PreparedRequest]) -> list[Future]:
        """Queue several requests at once (all or none), so that the worker takes them into one batch
        when their rows fit `max_batch_size`: one input's requests to several tasks."""
        jobs = [_Job(r, Future(), len(r.examples), *_run_order(r)) for r in requests]
        inputs = sum(job.inputs for job in jobs)
        with self._cond:
            if self._closing:
                raise ShuttingDownError("the server is shutting down")
            if self._thread is None:
                raise ShuttingDownError("the batcher is not started")
            if self._pending + inputs > self.max_queue:
                raise QueueFullError(
                    f"the queue is full ({self._pending} inputs waiting, limit {self.max_queue}); retry later"
                )
            self._pending += inputs
            self._queue.extend(jobs)
            self._cond.notify()
        return [job.future for job in jobs]

    def predict(self, task: str, inputs: Sequence[Any], timeout: float | None = None) -> list[dict[str, Any]]:
        """Blocking convenience: prepare, queue, wait, format."""
        request = self.predictor.prepare(task, inputs)
        logits = self.submit(request).result(timeout)
        return self.predictor.format(request, logits)

    # --- the worker -----------------------------------------------------------------------------

    def _drop_cancelled(self) -> None:
        """Forget queued jobs whose caller cancelled them (called with the lock held)."""
        while self._queue and self._queue[0].future.cancelled():
            job = self._queue.popleft()
            self._pending -= job.inputs
            self.stats["cancelled"] += 1

    def _refuse_expired(self) -> None:
        """After drain()'s deadline: fail every queued job (called with the lock held)."""
        if self._deadline is None or time.monotonic() < self._deadline:
            return
        while self._queue:
            job = self._queue.popleft()
            self._pending -= job.inputs
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDownError("the server is shutting down; retry later"))
                self.stats["refused_at_shutdown"] += 1
            else:
                self.stats["cancelled"] += 1

    def _take(self, job: _Job, room: int, first: bool) -> _Slice | None:
        """The next features of `job` that fit `room` rows (at least one feature for a batch's
        first slice: a feature is never cut), or None when not even one fits."""
        stop = job.done
        rows = 0
        while stop < len(job.rows_of) and (rows + job.rows_of[stop] <= room or (first and stop == job.done)):
            rows += job.rows_of[stop]
            stop += 1
        if stop == job.done and job.rows_of:
            return None
        return _Slice(job, job.done, stop)

    def _next_batch(self) -> list[_Slice] | None:
        with self._cond:
            while True:
                self._refuse_expired()
                self._drop_cancelled()
                if self._queue:
                    break
                if self._closing:
                    return None
                self._cond.wait()
            batch: list[_Slice] = []
            rows = 0
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_batch_size:
                self._drop_cancelled()
                if self._queue:
                    part = self._take(self._queue[0], self.max_batch_size - rows, first=not batch)
                    if part is None:
                        break
                    self._queue.popleft()  # an unfinished job is queued again after the batch ran
                    batch.append(part)
                    rows += part.rows
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [part for part in batch if not part.job.future.cancelled()]
            error = None
            try:
                if live:
                    values = self.predictor.compute_parts(
                        [(part.job.request, part.features) for part in live],
                        max_batch_size=self.max_batch_size,
                    )
                    for part, part_values in zip(live, values, strict=True):
                        part.job.values.update(zip(part.features, part_values, strict=True))
                        part.job.done = part.stop
            except Exception as exc:  # answer every caller; the worker keeps serving
                error = exc
            answered: list[_Job] = []
            with self._cond:
                for part in batch:
                    job = part.job
                    if job.future.cancelled():
                        self._pending -= job.inputs
                        self.stats["cancelled"] += 1
                    elif error is None and not job.finished:
                        self._queue.append(job)  # behind what arrived meanwhile: others take turns
                        self._cond.notify()
                    else:
                        # the queue room is given back before any caller hears its answer, so a caller
                        # that sends again right after its answer never finds its own inputs counted
                        self._pending -= job.inputs
                        answered.append(job)
            if error is not None:
                self.stats["errors"] += 1
            elif live:
                self.stats["batches"] += 1
                self.stats["rows"] += sum(part.rows for part in live)
                if len({id(part.job.request.task) for part in live}) > 1:
                    self.stats["mixed_batches"] += 1
            for job in answered:
                if not job.future.set_running_or_notify_cancel():
                    self.stats["cancelled"] += 1
                elif error is not None:
                    job.future.set_exception(error)
                else:
                    try:
                        output = self.predictor.join(job.request, job.ordered_values())
                    except Exception as exc:
                        job.future.set_exception(exc)
                        continue
                    job.future.set_result(output)
                    self.stats["requests"] += 1


def _run_order(request: PreparedRequest) -> tuple[list[int], list[int]]:
    """The features' indices shortest first (a feature's longest row), and each one's rows."""
    head = request.task.model.head
    rows = [head.rows_of(feature) for feature in request.features]
    order = sorted(range(len(rows)), key=lambda f: max((len(r["input_ids"]) for r in rows[f]), default=0))
    return order, [len(rows[f]) for f in order]
