"""One run at a time per process: a first-come, first-served queue whose waiting runs see their place."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator


class QueueFull(Exception):
    """More runs wait than the queue takes."""


class RunQueue:
    """Tickets in arrival order; the first one runs. Lives on one event loop (not thread-safe)."""

    def __init__(self, limit: int):
        self.limit = limit  # runs waiting behind the running one
        self._tickets: list[object] = []
        self._changed = asyncio.Event()  # set (and replaced) whenever a ticket leaves

    def join(self) -> object:
        if len(self._tickets) > self.limit:
            raise QueueFull(f"{self.limit} runs are already waiting; try again later")
        ticket = object()
        self._tickets.append(ticket)
        return ticket

    @property
    def waiting(self) -> int:
        return max(len(self._tickets) - 1, 0)

    @property
    def running(self) -> bool:
        return bool(self._tickets)

    async def turn(self, ticket: object) -> AsyncIterator[int]:
        """Yields the ticket's place (1 = next) each time it changes, and returns when the ticket may run."""
        while True:
            changed = self._changed  # taken before yielding, so a leave meanwhile is not missed
            place = self._tickets.index(ticket)
            if place == 0:
                return
            yield place
            await changed.wait()

    def leave(self, ticket: object) -> None:
        self._tickets.remove(ticket)
        self._changed.set()
        self._changed = asyncio.Event()
