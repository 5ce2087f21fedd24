"""Micro-batching: concurrent requests' scene photos gathered into one scene-tower call.

Like TF Serving's batcher: a batch closes when it holds `max_batch` images or `max_wait` seconds
after its first image arrived, whichever comes first; one worker runs batches one at a time in a
thread (the event loop keeps accepting). Every batch reads the live generation once and answers
all its requests from it. When the tower refuses a batch (a corrupt image among them), each image
is retried alone so only the bad request fails. The queue is bounded: `submit` raises QueueFull
instead of growing without limit.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from ctl_keras.serve.tower import BadImage


class QueueFull(RuntimeError):
    pass


class Batcher:
    def __init__(self, live, metrics, *, max_batch: int, max_wait: float, max_queue: int):
        self.live, self.metrics = live, metrics
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self._queue: asyncio.Queue | None = None
        self._pending = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tower")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return self._pending

    async def submit(self, image: bytes, answer):
        """answer(generation, query [C, d], attention [C, g, g]) runs in the tower thread; its
        result, with the generation, is returned. Raises QueueFull, BadImage."""
        if self._pending >= self.max_queue:
            raise QueueFull(f"{self._pending} requests waiting (--max_queue={self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        self._pending += 1
        self.metrics.queue_depth.set(self._pending)
        try:
            await self._queue.put((image, answer, future))
            return await future
        finally:
            self._pending -= 1
            self.metrics.queue_depth.set(self._pending)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            end = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = end - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            batch = [item for item in batch if not item[2].done()]  # deadline passed while queued
            if not batch:
                continue
            self.metrics.batch_size.observe(len(batch))
            results = await loop.run_in_executor(self._executor, self._answer, batch)
            for (_, _, future), result in zip(batch, results):
                if not future.done():
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    def _answer(self, batch) -> list:
        """In the tower thread: one generation, one tower call (or one per image after a refusal)."""
        generation = self.live.current
        started = time.perf_counter()
        try:
            query, attention = generation.tower([image for image, _, _ in batch])
            outputs = [(query[i], attention[i]) for i in range(len(batch))]
        except BadImage:
            outputs = []
            for image, _, _ in batch:
                try:
                    q, a = generation.tower([image])
                    outputs.append((q[0], a[0]))
                except BadImage as err:
                    outputs.append(err)
        except Exception as err:  # the tower is down (TF Serving unreachable, ...): every request fails
            return [RuntimeError(f"scene tower call failed: {' '.join(str(err).split())[:200]}")] * len(batch)
        tower_seconds = time.perf_counter() - started
        results = []
        for (_, answer, _), out in zip(batch, outputs):
            if isinstance(out, BaseException):
                results.append(out)
                continue
            try:
                results.append((generation, answer(generation, *out), tower_seconds, len(batch)))
            except Exception as err:
                results.append(err)
        return results
