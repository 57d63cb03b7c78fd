"""The batch counter: counts come back per item and in order, equal to the tokenizer's own; a second pass
over the same texts (another provider billing the same rendering) is answered from the remembered batches,
and two passes at once count each batch once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import pytest

from anytune.data.counting import BatchCounter
from anytune.data.tokens import get_token_counter

pytest.importorskip("quicktok")


class Watched:
    """quicktok's cl100k counter, under a name of its own, recording each call it gets."""

    exact = True

    def __init__(self) -> None:
        self.inner = get_token_counter("quicktok:cl100k_base")
        self.name = f"watched-{uuid.uuid4().hex}"  # nothing another test counted is remembered for it
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str], special: bool = False) -> list[int]:
        with self._lock:
            self.calls.append(len(texts))
        return self.inner.count_many(texts, special=special)


def records(n: int, changed: int | None = None) -> list[list[str]]:
    out = []
    for i in range(n):
        texts = [f"question {i}: how do I reset my password?", f"answer {i}: open settings, then security."]
        if i % 3 == 0:
            texts.append("<|endoftext|> and a third text, with ünïcode")
        if i == changed:
            texts[0] += " (changed)"
        out.append(texts)
    return out


def run(counter: Watched, data: list[list[str]], special: bool = False) -> tuple[list[int], list[int]]:
    seen: list[int] = []
    totals: list[int] = []

    def take(items: list[int], counts: list[int]) -> None:
        seen.extend(items)
        totals.extend(counts)

    with BatchCounter[int](counter, take, special=special, batch=100) as counts:  # type: ignore[arg-type]
        for i, texts in enumerate(data):
            counts.add(i, texts)
    assert counts.items == len(data) and counts.tokens == sum(totals)
    return seen, totals


def counted_in_order(counter: Watched, data: list[list[str]]) -> list[int]:
    """Counts of one pass: per item, in order, each the tokenizer's own, every text counted once."""
    seen, totals = run(counter, data)
    assert seen == list(range(len(data)))
    assert totals == [sum(counter.inner.count_many(texts)) for texts in data]
    assert sum(counter.calls) == sum(len(t) for t in data)
    return totals


def test_counts_come_back_per_item_in_order_and_equal_the_tokenizers():
    counted_in_order(Watched(), records(450))


def test_a_second_pass_over_the_same_texts_counts_nothing_and_a_change_recounts_one_batch():
    counter = Watched()
    first = run(counter, records(450))
    batches = len(counter.calls)
    assert batches >= 4
    assert run(counter, records(450)) == first
    assert len(counter.calls) == batches  # all remembered
    changed = run(counter, records(450, changed=200))
    assert len(counter.calls) == batches + 1  # only the batch holding record 200
    assert changed[1][200] > first[1][200] and changed[1][:200] == first[1][:200]
    run(counter, records(450), special=True)  # special tokens counted otherwise: not the same counts
    assert len(counter.calls) == 2 * batches + 1


def test_two_passes_at_once_count_each_batch_once():
    counter = Watched()
    data = records(3000)
    results: list[tuple[list[int], list[int]]] = []
    threads = [threading.Thread(target=lambda: results.append(run(counter, data))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1]
    assert sum(counter.calls) == sum(len(t) for t in data)


class HoldsTheGil(Watched):
    """A counter in Python: BatchCounter must count it on the caller's thread (a thread would only take
    turns with the caller for the GIL)."""

    releases_gil = False

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def count_many(self, texts: Sequence[str], special: bool = False) -> list[int]:
        self.threads.add(threading.get_ident())
        return super().count_many(texts, special=special)


def test_a_counter_that_holds_the_gil_counts_on_the_callers_thread_with_the_same_results():
    counter = HoldsTheGil()
    data = records(450)
    totals = counted_in_order(counter, data)
    assert counter.threads == {threading.get_ident()}
    calls = len(counter.calls)
    assert run(counter, data)[1] == totals and len(counter.calls) == calls  # still remembered between passes


def test_a_tokenizer_file_the_library_cannot_read_is_named_not_an_internal_error(tmp_path, capsys):
    """`tokenizers` raises a bare Exception for a file it cannot take; `--tokenizer` pointed at the data file
    by mistake, or at a folder with a broken tokenizer.json, ended in "internal error"."""
    from anytune.errors import UsageError
    from tests.conftest import anytune_in_process, reversal_rows, write_jsonl

    pytest.importorskip("tokenizers")
    data = write_jsonl(tmp_path / "data.jsonl", reversal_rows(2))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')
    for given, named in ((data, data), (broken, broken / "tokenizer.json")):
        with pytest.raises(UsageError, match=f"{named}: not a tokenizer the `tokenizers` library reads"):
            get_token_counter(str(given))
        code, out = anytune_in_process(capsys, "validate", str(data), "--tokenizer", str(given))
        assert code == 2 and "internal error" not in out and f"{named}: not a tokenizer" in out, out
