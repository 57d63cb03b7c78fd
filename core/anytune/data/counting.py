"""Counting the tokens of a stream of records a batch at a time, on a background thread.

A tokenizer call costs a fixed overhead (0.1-0.2 ms) plus its work, so texts are counted in batches of about a
thousand; and the tokenizers anytune uses (quicktok, Hugging Face `tokenizers`) release the GIL while they
count, so one batch is counted on a background thread while the caller reads, checks and converts the next.
On two cores that hides most of the counting behind the parsing (measured in docs/performance.md).

Results come back in the order the items were given, through `on_counts`, always on the caller's thread: a
callback never runs concurrently with the code that feeds the counter.

A quote runs several providers' passes over one file, and providers that train the same model family render
and count the same texts (Together, Fireworks and Hugging Face all bill Llama 3's template in Llama 3's
tokenizer). So each batch's counts are remembered by the tokenizer and a hash of the batch's texts: the
second pass over the same texts gets them without tokenizing, and a pass that asks for a batch another thread
is counting waits for that count instead of making its own. The memory is bounded (`REMEMBERED_BATCHES`
batches of 4-byte counts); a pass whose texts differ anywhere only misses.
"""

from __future__ import annotations

import os
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from anytune.data.tokens import TokenCounter

T = TypeVar("T")
BATCH_TEXTS = 2048  # texts per tokenizer call: past ~1,000 the per-call overhead no longer shows
BatchKey = tuple[str, bool, int, int, int]
REMEMBERED_BATCHES = 1024  # counts of this many batches (8 KB each) are kept for passes over the same texts

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: it makes its own on first use (and no count
    another process's thread was making can be waited for)."""
    global _pool
    _pool = None
    _memory.forget_pending()


class _BatchMemory:
    """Counts of recent batches by (tokenizer, special, hashes of the texts and of their lengths), least
    recently used dropped; and the batches being counted now, so a second asker waits for the first count."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._done: OrderedDict[BatchKey, array[int]] = OrderedDict()
        self._pending: dict[BatchKey, Future[list[int]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(counter: TokenCounter, texts: Sequence[str], special: bool) -> BatchKey:
        # Python's own string hash (SipHash under a key drawn per process, remembered by each string) of the
        # texts and of their lengths: a wrong match needs two 64-bit collisions at once. A blake2b digest of
        # the joined text cost five times as much, all of it holding the GIL (0.65 vs 0.13 s a pass over
        # 200k chats, four passes in a quote)
        return (counter.name, special, len(texts), hash(tuple(map(len, texts))), hash(tuple(texts)))

    def count(self, counter: TokenCounter, texts: list[str], special: bool) -> list[int]:
        key = self.key(counter, texts, special)
        with self._lock:
            done = self._done.get(key)
            if done is not None:
                self._done.move_to_end(key)
                return done.tolist()
            pending = self._pending.get(key)
            if pending is None:
                mine: Future[list[int]] = Future()
                self._pending[key] = mine
        if pending is not None:
            return list(pending.result())
        try:
            counts = counter.count_many(texts, special=special)
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            mine.set_exception(exc)
            raise
        with self._lock:
            self._pending.pop(key, None)
            self._done[key] = array("I", counts)
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        mine.set_result(counts)
        return counts

    def forget_pending(self) -> None:
        self._pending = {}
        self._lock = threading.Lock()


_memory = _BatchMemory(REMEMBERED_BATCHES)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="anytune-count")
        return _pool


class BatchCounter(Generic[T]):
    """`add(item, texts)` for each record; `on_counts(items, tokens)` receives each item with the summed
    tokens of its texts, in order. `close()` (or leaving the `with` block) counts what is left.

    An estimating counter (not `exact`) is cheap: it counts inline, with no thread; so does one that says
    `releases_gil = False`."""

    def __init__(
        self,
        counter: TokenCounter,
        on_counts: Callable[[list[T], list[int]], None],
        *,
        special: bool = False,
        batch: int = BATCH_TEXTS,
    ) -> None:
        self.counter = counter
        self.on_counts = on_counts
        self.special = special
        self.batch = batch
        self.tokens = 0
        self.items = 0
        self._items: list[T] = []
        self._sizes: list[int] = []
        self._texts: list[str] = []
        self._inflight: tuple[list[T], list[int], Future[list[int]]] | None = None
        self._background = counter.exact

    def __enter__(self) -> BatchCounter[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # an error in the caller: wait for the thread, report nothing more
            self._abandon()

    def add(self, item: T, texts: Sequence[str]) -> None:
        self._items.append(item)
        self._sizes.append(len(texts))
        self._texts.extend(texts)
        if len(self._texts) >= self.batch:
            self._flush()

    def close(self) -> None:
        if self._items:
            self._flush()
        self._settle()

    def _flush(self) -> None:
        items, sizes, texts = self._items, self._sizes, self._texts
        self._items, self._sizes, self._texts = [], [], []
        if not self._background:
            self._deliver(items, sizes, self.counter.count_many(texts, special=self.special))
            return
        if not getattr(self.counter, "releases_gil", True):
            # a counter in Python (SmolLM2's words) gains nothing on a thread: it would only take turns with
            # the caller for the GIL (a local quote of 200k chats: 15.5 s threaded, 12 s inline)
            self._settle()
            self._deliver(items, sizes, _memory.count(self.counter, texts, self.special))
            return
        # at most one batch in flight: memory stays at two batches whatever the file; two at once measured
        # slower (validating 20k chats 0.51 -> 0.65 s, SmolLM2's count 3.0 -> 4.2 s): the caller's parsing
        # keeps the second core busy already, and tiktoken's GPT-2 encoding gains nothing from a second thread
        self._settle()
        future = _executor().submit(_memory.count, self.counter, texts, self.special)
        self._inflight = (items, sizes, future)

    def _settle(self) -> None:
        if self._inflight is not None:
            items, sizes, future = self._inflight
            self._inflight = None
            self._deliver(items, sizes, future.result())

    def _abandon(self) -> None:
        if self._inflight is not None:
            self._inflight[2].cancel() or self._inflight[2].exception()
            self._inflight = None

    def _deliver(self, items: list[T], sizes: list[int], counts: Sequence[int]) -> None:
        totals: list[int] = []
        position = 0
        for size in sizes:
            totals.append(int(sum(counts[position : position + size])))
            position += size
        self.tokens += sum(totals)
        self.items += len(items)
        self.on_counts(items, totals)
