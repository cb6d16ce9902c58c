"""Requests that arrive together are scored together: one forward pass for up to ``max_batch`` images.

A request waits at most ``max_wait`` seconds for others to join its batch. While a batch is in
the model, new requests queue, so a busy line fills the next batch without waiting at all.
The model runs on one thread of its own (its intra-op threads do the parallel work).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from patchcore.apps.service.uploads import Rejected


class Batcher:
    def __init__(self, score: Callable[[list], Sequence[Any]], max_batch: int, max_wait: float, max_queue: int):
        self.score, self.max_batch, self.max_wait, self.max_queue = score, max_batch, max_wait, max_queue
        self.queue: asyncio.Queue = asyncio.Queue()
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.task: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the last batches, for /v1/model's figures

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.model_thread.shutdown(wait=True)

    async def submit(self, item: Any) -> Any:
        """``item``'s result, once its batch has been scored."""
        if self.queue.qsize() >= self.max_queue:
            raise Rejected(503, f"the service is busy ({self.max_queue} images waiting); retry shortly")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def _gather(self) -> list[tuple[Any, asyncio.Future]]:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return [(item, future) for item, future in batch if not future.cancelled()]  # a client that left is not scored

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            self.batches = [*self.batches[-99:], len(batch)]
            try:
                results = await loop.run_in_executor(self.model_thread, self.score, [item for item, _ in batch])
            except Exception as exc:  # one bad batch fails its requests, not the service
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
