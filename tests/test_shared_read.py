"""Passes over one clean file at the same time share its parse: each still gets every record, in order."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from anytune.data import shared_read
from anytune.data.shared_read import read_clean


def write(path: Path, n: int) -> list[tuple[int, Any]]:
    """A file of `n` records with a BOM and blank lines in it; the (line, value) pairs a reader must give."""
    expected, lines = [], []
    for i in range(n):
        if i % 97 == 5:
            lines.append("")
        lines.append(json.dumps({"i": i}))
        expected.append((len(lines), {"i": i}))
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    return expected


def wait_for_readers(n: int) -> None:
    """Until `n` readers have joined one file's group (10 s at most): threads start apart on a busy machine,
    and a test of sharing must not depend on when."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(len(g._readers) >= n for g in list(shared_read._GROUPS.values())):
            return
        time.sleep(0.005)


class Parser:
    """json.loads, counted; its first call waits for `readers` readers to have joined."""

    def __init__(self, readers: int = 1, parse: Any = json.loads) -> None:
        self.calls = 0
        self.readers = readers
        self.parse = parse
        self.lock = threading.Lock()

    def __call__(self, raw: bytes) -> Any:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            wait_for_readers(self.readers)
        return self.parse(raw)


def read_in_threads(readers: list[Any]) -> list[list[tuple[int, Any]]]:
    out: list[list[tuple[int, Any]]] = [[] for _ in readers]
    start = threading.Barrier(len(readers))

    def run(k: int) -> None:
        start.wait()
        for item in readers[k]:
            out[k].append(item)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(readers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return out


def test_readers_at_the_same_time_get_every_record_in_order_from_one_parse(tmp_path: Path):
    expected = write(tmp_path / "d.jsonl", 5000)
    parse = Parser(readers=4)
    readers = [read_clean(tmp_path / "d.jsonl", "k1", parse) for _ in range(4)]
    results = read_in_threads(readers)
    assert all(r == expected for r in results)
    assert parse.calls < 2 * len(expected)  # alone, four readers would parse 4x; shared, about once
    assert shared_read._GROUPS == {}  # the last reader out closed it


def test_a_reader_that_comes_late_reads_the_passed_lines_alone_then_joins(tmp_path: Path):
    expected = write(tmp_path / "d.jsonl", 3000)
    parse = Parser()
    first = read_clean(tmp_path / "d.jsonl", "k2", parse)
    got_first = [next(first) for _ in range(1500)]
    late = read_clean(tmp_path / "d.jsonl", "k2", parse)
    got_late = [next(late)]  # it has joined (and reads line 1 alone)
    results = read_in_threads([first, late])
    assert got_first + results[0] == expected and got_late + results[1] == expected
    assert parse.calls < 2 * len(expected)  # the late one read about half alone, then shared


def test_a_reader_that_stops_moving_is_cut_loose_and_still_gets_the_rest(tmp_path: Path, monkeypatch):
    """Two readers driven by one thread: the one in front would wait for the other for ever; after STALL
    seconds the other reads on alone, from where it was."""
    monkeypatch.setattr(shared_read, "STALL", 0.2)
    expected = write(tmp_path / "d.jsonl", 3 * shared_read.AHEAD * shared_read.CHUNK_LINES)
    ahead = read_clean(tmp_path / "d.jsonl", "k3", json.loads)
    behind = read_clean(tmp_path / "d.jsonl", "k3", json.loads)
    started = [next(behind)]
    assert list(ahead) == expected  # finishes: the held reader was cut loose
    assert started + list(behind) == expected


def test_a_reader_waiting_for_a_slow_parse_is_not_cut_loose(tmp_path: Path, monkeypatch):
    """Waiting for the chunk another reader is parsing is not stalling: a first parse slower than STALL
    (a busy machine) must not send the waiting reader off to read the whole file again alone."""
    monkeypatch.setattr(shared_read, "STALL", 0.2)
    expected = write(tmp_path / "d.jsonl", 8 * shared_read.CHUNK_LINES)
    parse = Parser(readers=2)
    slow_first = parse.parse

    def slow(raw: bytes) -> Any:
        if parse.calls == 1:
            time.sleep(0.6)
        return slow_first(raw)

    parse.parse = slow
    results = read_in_threads([read_clean(tmp_path / "d.jsonl", "k5", parse) for _ in range(2)])
    assert all(r == expected for r in results)
    assert parse.calls < 1.5 * len(expected)


def test_a_reader_closed_early_does_not_hold_the_others(tmp_path: Path):
    expected = write(tmp_path / "d.jsonl", 2 * shared_read.AHEAD * shared_read.CHUNK_LINES)
    quitter = read_clean(tmp_path / "d.jsonl", "k4", json.loads)
    stayer = read_clean(tmp_path / "d.jsonl", "k4", json.loads)
    assert next(quitter) == expected[0]
    quitter.close()
    assert list(stayer) == expected
    assert shared_read._GROUPS == {}


def test_a_quote_across_providers_parses_the_file_once_per_chunk_not_once_per_provider(tmp_path, monkeypatch):
    """Providers' prepares run on threads at the same time and read the same clean file: the parses
    after the validation stay well under one per provider per line, and each provider counts what it
    counts alone."""
    pytest.importorskip("quicktok")
    from anytune import Client, JobSpec
    from anytune.client import quote
    from anytune.data import validate

    data = tmp_path / "chats.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(6000)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = JobSpec(
        name="shared",
        base_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        provider_options={"openai": {"base_model": "gpt-4o-mini"}},
        data={"train": str(data)},
    )
    counted = Parser(readers=2, parse=validate._value_of)  # both passes have started reading
    monkeypatch.setattr(validate, "_value_of", counted)
    shared = quote(spec, ["together", "openai"], client=Client(), processes=1)
    tokens = {q.provider: q.billable_tokens for q in shared.quotes}
    monkeypatch.setattr(validate, "_value_of", counted.parse)
    alone = {
        q.provider: q.billable_tokens
        for name in ("together", "openai")
        for q in quote(spec, name, client=Client(), processes=1).quotes
    }
    assert tokens == alone
    assert counted.calls < 1.5 * len(rows)  # two passes after the validation, about one parse
