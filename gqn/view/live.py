"""Rendering that keeps up with a hand: one rendering thread, and only the newest request counts.

A person dragging a camera asks for a view every few milliseconds; the model needs tens. Queued,
the picture would trail the hand further with every frame. So each client has one slot: a new
request takes the slot, and the request it replaces, if not yet started, is answered at once as
overtaken. The renderer takes whichever slot has waited longest, so two pages take turns.

    live = LiveRenderer()                                   # renders on a thread of its own
    future = live.submit("page-1", lambda: render(...))   # a concurrent.futures.Future
    result = future.result()                                # or raises Overtaken
    live.close()

`gqn view` renders on the main thread instead (`LiveRenderer(thread=False)`, then `serve()`), and
no other thread computes: torch's OpenMP gives every thread that computes a team of its own, and
once a process has more team threads than cores, GNU OpenMP stops spinning between parallel
regions and puts its workers to sleep, so every one of a render's hundreds of small operations
waits for a wake-up. A 128 px render took 131 ms on a second computing thread against 75 ms on
the first (benchmarks/view_latency.py measures the server as `gqn view` runs it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from gqn.errors import GQNError

POLL = 0.25  # seconds: how often an idle `serve` asks whether to go on


class Overtaken(GQNError):
    """A newer request of the same client took this one's place before it was rendered."""


class LiveRenderer:
    """Runs submitted jobs on one thread, newest per client only."""

    def __init__(self, name: str = "gqn-view-render", thread: bool = True):
        self._slots: dict[str, tuple[Callable[[], Any], Future]] = {}  # client -> waiting job
        self._order: list[str] = []  # clients with a waiting job, longest-waiting first
        self._wake = threading.Condition()
        self._closed = False
        self.rendered = 0
        self.overtaken = 0
        self._thread = None  # without one, the caller's thread renders (`serve`)
        if thread:
            self._thread = threading.Thread(target=self.serve, name=name, daemon=True)
            self._thread.start()

    def submit(self, client: str, job: Callable[[], Any]) -> Future:
        """Queue `job` as `client`'s only waiting request; the one it replaces raises Overtaken."""
        future: Future = Future()
        with self._wake:
            if self._closed:
                raise GQNError("the renderer is closed")
            old = self._slots.pop(client, None)
            if old is not None:
                self._order.remove(client)
                self.overtaken += 1
                old[1].set_exception(Overtaken("overtaken by a newer request"))
            self._slots[client] = (job, future)
            self._order.append(client)
            self._wake.notify()
        return future

    def serve(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Render the submitted jobs on this thread until `close`, or until `alive()` is false
        (asked before every job, and at least every POLL seconds while none waits; the jobs
        still waiting then are answered by `close`)."""
        while True:
            with self._wake:
                while not self._order and not self._closed and alive():
                    self._wake.wait(POLL)
                if self._closed or not alive():
                    return
                job, future = self._slots.pop(self._order.pop(0))
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as e:  # the caller gets it; the thread keeps serving
                future.set_exception(e)
            self.rendered += 1

    def close(self) -> None:
        """Stop the thread; waiting requests are answered as overtaken."""
        with self._wake:
            self._closed = True
            for _, future in self._slots.values():
                future.set_exception(Overtaken("the server is stopping"))
            self._slots.clear()
            self._order.clear()
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
