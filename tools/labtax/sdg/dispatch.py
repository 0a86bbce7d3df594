"""Sharing the teacher's request slots among every candidate of every leaf, by priority.

A `Dispatcher` holds as many slots as the teacher takes requests at once. A request that finds no free
slot waits in a heap ordered by priority: `(leaf rank, lineage)`, so the oldest leaf's oldest candidates
go first. A candidate's lineage is the path of indices that made it (`(j,)` for a leaf's j-th first-stage
request, `(j, i)` for the i-th item of its answer, ...), so in lineage order a candidate's next request
comes before any request of a later candidate: the work that decides which samples a leaf keeps is
done first, and a leaf finishes as soon as it can. Leaves that start new work ask for `room` first, in
rank order, so the queue of waiting requests stays short and no leaf starves the others.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

Priority = tuple[int, ...]


class Dispatcher:
    def __init__(self, teacher: Any, capacity: int, queue_target: int | None = None) -> None:
        self.teacher = teacher
        self.capacity = max(1, capacity)
        self.free = self.capacity
        # Requests allowed to wait for a slot before leaves are told to hold new work back.
        self.queue_target = queue_target if queue_target is not None else max(2, self.capacity // 2)
        self._waiting: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._room: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def has_room(self) -> bool:
        return len(self._waiting) < self.queue_target

    async def complete(self, priority: Priority, request: Any) -> Any:
        """The teacher's answer to `request`, once a slot is free and no more urgent request waits."""
        if self.free > 0 and not self._waiting:
            self.free -= 1
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._hand_on()  # the slot was ours already: pass it on
                raise
        try:
            return await self.teacher.complete(request)
        finally:
            self._hand_on()

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
