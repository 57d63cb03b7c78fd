"""A child process that counts tokens for a counter that holds the GIL (anytune.data.counting starts it).

`python -m anytune.data.count_child SPEC` rebuilds the counter from SPEC (what `get_token_counter` takes) and
answers batches until its input closes. A plain process started on purpose, not multiprocessing: spawning
through multiprocessing re-runs the user's main script in the child, and forking copies a process whose other
threads may hold locks. Frames both ways are an 8-byte little-endian length and a body: a pickled
`(texts, special)` in, the counts as 4-byte unsigned integers out.
"""

from __future__ import annotations

import pickle
import sys
from array import array
from typing import BinaryIO


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "little")
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: BinaryIO, body: bytes) -> None:
    stream.write(len(body).to_bytes(8, "little") + body)
    stream.flush()


def main() -> None:
    from anytune.data.tokens import get_token_counter

    counter = get_token_counter(sys.argv[1])
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while (frame := read_frame(source)) is not None:
        texts, special = pickle.loads(frame)
        write_frame(sink, array("I", counter.count_many(texts, special=special)).tobytes())


if __name__ == "__main__":
    main()
