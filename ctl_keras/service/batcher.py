"""Micro-batching: concurrent requests' scene photos gathered into one scene-tower call.

Like TF Serving's batcher: a batch closes when it holds `max_batch` images or `max_wait` seconds
after its first image arrived, whichever comes first. Two worker threads form a pipeline: the tower
thread runs one batch's tower call at a time, then hands the batch to the rank thread and starts the
next tower call at once, while the rank thread searches the catalog for the previous batch (one
search per category for the whole batch, not one per request). Every batch reads the live
generation once and both stages answer all its requests from it. When the tower refuses a batch (a
corrupt image among them), each image is retried alone so only the bad request fails. The queue is
bounded: `submit` raises QueueFull instead of growing without limit.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from ctl_keras.retrieval.scene_tower import BadImage
from ctl_keras.service.tower import TowerUnavailable


class QueueFull(RuntimeError):
    pass


class Batcher:
    """rank(generation, asks, outputs) -> one result (or exception) per request, in the rank thread:
    asks are what `submit` was given, outputs the tower's (query [C, d], attention [C, g, g]) each."""

    def __init__(self, live, metrics, rank, *, max_batch: int, max_wait: float, max_queue: int):
        self.live, self.metrics, self.rank = live, metrics, rank
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self._queue: asyncio.Queue | None = None
        self._pending = 0
        self._tower = ThreadPoolExecutor(1, thread_name_prefix="tower")
        self._ranker = ThreadPoolExecutor(1, thread_name_prefix="rank")
        self._ranking: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._ranking:
            await asyncio.gather(*self._ranking, return_exceptions=True)
        self._tower.shutdown(wait=True)
        self._ranker.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return self._pending

    async def submit(self, image: bytes, ask):
        """(generation, rank's result for this request, tower seconds, batch size). Raises QueueFull,
        BadImage, or what rank returned as this request's exception."""
        if self._pending >= self.max_queue:
            raise QueueFull(f"{self._pending} requests waiting (--max_queue={self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        self._pending += 1
        self.metrics.queue_depth.set(self._pending)
        try:
            await self._queue.put((image, ask, future))
            return await future
        finally:
            self._pending -= 1
            self.metrics.queue_depth.set(self._pending)

    async def _gather(self, loop) -> list:
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
        return [item for item in batch if not item[2].done()]  # deadline passed while queued

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(loop)
            if not batch:
                continue
            self.metrics.batch_size.observe(len(batch))
            generation, outputs, seconds = await loop.run_in_executor(self._tower, self._call_tower, batch)
            task = loop.create_task(self._finish(loop, batch, generation, outputs, seconds))
            self._ranking.add(task)
            task.add_done_callback(self._ranking.discard)

    async def _finish(self, loop, batch, generation, outputs, seconds) -> None:
        results = await loop.run_in_executor(self._ranker, self._rank, batch, generation, outputs, seconds)
        for (_, _, future), result in zip(batch, results):
            if not future.done():
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _call_tower(self, batch):
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
        except Exception as err:  # the tower is down (TF Serving unreachable, ...): every request fails, 503
            if not isinstance(err, TowerUnavailable):
                err = TowerUnavailable(f"scene tower call failed: {' '.join(str(err).split())[:200]}")
            outputs = [err] * len(batch)
        return generation, outputs, time.perf_counter() - started

    def _rank(self, batch, generation, outputs, seconds) -> list:
        """In the rank thread: the requests the tower answered are ranked together."""
        good = [i for i, out in enumerate(outputs) if not isinstance(out, BaseException)]
        results = list(outputs)
        try:
            ranked = self.rank(generation, [batch[i][1] for i in good], [outputs[i] for i in good])
        except Exception as err:
            ranked = [err] * len(good)
        for i, r in zip(good, ranked):
            results[i] = r if isinstance(r, BaseException) else (generation, r, seconds, len(batch))
        return results
