"""Sharing the teacher's request slots among every candidate of every leaf, by priority.

A `Dispatcher` holds as many slots as the teacher takes requests at once. A request that finds no free
slot waits in a heap ordered by priority: `(leaf rank, lineage)`, so the oldest leaf's oldest candidates
go first. A candidate's lineage is the path of indices that made it (`(j,)` for a leaf's j-th first-stage
request, `(j, i)` for the i-th item of its answer, ...), so in lineage order a candidate's next request
comes before any request of a later candidate: the work that decides which samples a leaf keeps is
done first, and a leaf finishes as soon as it can. Leaves that start new work ask for `room` first, in
rank order, so the queue of waiting requests stays short and no leaf starves the others.

**Hedging** ("The Tail at Scale", Dean and Barroso, 2013). A leaf is settled only when every candidate
below its target is decided, so near the end one slow answer (latencies are heavy-tailed: one in a
thousand takes ten times the median) holds the leaf, and the run, while the slots sit idle. When a slot
is idle, nothing waits for one, and a request has been in flight for `HEDGE_AFTER` times the median
latency seen so far, the same request (same key, same seed) is sent once more on the idle slot; the
first answer wins and the other is cancelled. Only idle capacity is ever used, so hedges never delay
real work; a seeded server answers both the same, and either way the answer used is the one journaled.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Priority = tuple[int, ...]
HEDGE_AFTER = 3.0  # × the median latency
MIN_HEDGE_CAPACITY = 8  # no hedging for small servers (a local model, transformers serve): they would queue it


@dataclass
class _InFlight:
    started: float
    request: Any
    answer: asyncio.Future[Any]  # the first answer of any attempt
    # The asking task's context: every attempt, a hedge started from a timer too, runs in it, so the
    # teacher counts it for the leaf that asked (labtax.sdg.teacher.REQUEST_OWNER).
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    hedged: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class Dispatcher:
    def __init__(self, teacher: Any, capacity: int, queue_target: int | None = None, hedge: bool = True) -> None:
        self.teacher = teacher
        self.capacity = max(1, capacity)
        self.free = self.capacity
        # Requests allowed to wait for a slot before leaves are told to hold new work back.
        self.queue_target = queue_target if queue_target is not None else max(2, self.capacity // 2)
        self.hedge = hedge and self.capacity >= MIN_HEDGE_CAPACITY
        self.hedged = 0  # requests sent a second time
        self._waiting: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._room: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._in_flight: dict[int, _InFlight] = {}
        self._latencies: deque[float] = deque(maxlen=256)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def has_room(self) -> bool:
        return len(self._waiting) < self.queue_target

    def _purge(self) -> None:
        """Drop waiters that gave up (cancelled) from the top of the heap: they must not hold a free slot back."""
        while self._waiting and self._waiting[0][2].done():
            heapq.heappop(self._waiting)

    async def _slot(self, priority: Priority) -> None:
        self._purge()
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._hand_on()  # the slot was ours already: pass it on
            raise

    async def complete(self, priority: Priority, request: Any) -> Any:
        """The teacher's answer to `request`, once a slot is free and no more urgent request waits."""
        await self._slot(priority)
        number = next(self._order)
        entry = _InFlight(time.monotonic(), request, answer=asyncio.get_running_loop().create_future())
        self._in_flight[number] = entry
        self._attempt(entry)
        self._schedule_hedge()
        try:
            result = await entry.answer
            self._latencies.append(time.monotonic() - entry.started)
            return result
        finally:
            del self._in_flight[number]
            for task in entry.tasks:
                if not task.done():
                    task.cancel()
            for _ in entry.tasks:
                self._hand_on()

    def _attempt(self, entry: _InFlight) -> None:
        """Send `entry`'s request (again); the first answer resolves it, a failure only when all have failed."""
        task = asyncio.get_running_loop().create_task(self.teacher.complete(entry.request), context=entry.context)
        entry.tasks.append(task)

        def finished(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                return
            failure = task.exception()  # retrieved either way: a loser's failure is nobody's concern
            if entry.answer.done():
                return
            if failure is None:
                entry.answer.set_result(task.result())
            elif all(t.done() for t in entry.tasks):
                entry.answer.set_exception(failure)

        task.add_done_callback(finished)

    def _hand_on(self) -> None:
        """A slot came free: give it to the most urgent waiting request, or keep it free."""
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():
                granted.set_result(None)
                self._wake_room()
                return
        self.free += 1
        self._wake_room()
        self._schedule_hedge()

    # --- hedging ------------------------------------------------------------------------------------

    def _hedge_delay(self) -> float | None:
        if len(self._latencies) < 16:
            return None
        ordered = sorted(self._latencies)
        return HEDGE_AFTER * ordered[len(ordered) // 2]

    def _schedule_hedge(self) -> None:
        if not self.hedge or self.free <= 0 or self._waiting or not self._in_flight or self._timer is not None:
            return
        delay = self._hedge_delay()
        if delay is None:
            return
        oldest = min((e.started for e in self._in_flight.values() if not e.hedged), default=None)
        if oldest is None:
            return
        wait = oldest + delay - time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, wait), self._maybe_hedge)

    def _maybe_hedge(self) -> None:
        self._timer = None
        delay = self._hedge_delay()
        if delay is None:
            return
        now = time.monotonic()
        for entry in sorted(self._in_flight.values(), key=lambda e: e.started):
            if self.free <= 0 or self._waiting:
                return
            if entry.hedged or now - entry.started < delay:
                continue
            entry.hedged = True
            self.free -= 1
            self.hedged += 1
            self._attempt(entry)
        self._schedule_hedge()

    # --- new work -----------------------------------------------------------------------------------

    async def room(self, rank: int) -> None:
        """Return when a leaf may start new work: the waiting queue is short (leaves served in rank order)."""
        if self.has_room() and not self._room:
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._room, (rank, next(self._order), wake))
        self._wake_room()
        await wake

    def _wake_room(self) -> None:
        while self._room and self.has_room():
            _, _, wake = heapq.heappop(self._room)
            if not wake.done():
                wake.set_result(None)
                return
