"""Benchmark: a 1 GB dataset uploaded to `anytune server` through a proxy that cuts the connection at 50%,
resumed, and a model archive pulled with a cut and a Range resume; the suite's short form is
tests/test_service_data.py (64 MB).

    .venv/bin/python tests/benchmarks/upload_1gb.py [--gb 1.0] [--keep DIR]

Prints: the file's size, the bytes that crossed the proxy (the goal: under 1.1x the file, so the first half
is not sent again), the server's resident memory before and its peak (VmHWM) after (the goal: growth under
100 MB), the wall time of the upload (hashing, streaming, validation and keeping), and whether the kept blob
hashes to the file's SHA-256. Exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.cutting_proxy import CuttingProxy
from tests.test_service_crash import Server, free_port


def write_file(path: Path, size: int) -> None:
    pad = "x" * 2000
    with path.open("w") as f:
        i = 0
        while f.tell() < size:
            row = {
                "messages": [
                    {"role": "user", "content": f"q{i} {pad}"},
                    {"role": "assistant", "content": f"a{i}"},
                ]
            }
            f.write(json.dumps(row) + "\n")
            i += 1


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="anytune-upload-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "big.jsonl"
    target = int(args.gb * 2**30)
    if not data.exists() or data.stat().st_size < target:
        write_file(data, target)
    size = data.stat().st_size
    digest = "sha256:" + hashlib.file_digest(data.open("rb"), "sha256").hexdigest()
    env = dict(os.environ, ANYTUNE_HOME=str(folder / "server-home"))
    server = Server(env, free_port(), folder / "server.log")
    server.start()
    proxy = CuttingProxy(server.port, cut_up_after=size // 2)
    os.environ["ANYTUNE_HOME"] = str(folder / "client-home")
    from anytune.client import Client

    try:
        assert server.proc is not None
        before = rss_kb(server.proc.pid, "VmRSS")
        started = time.perf_counter()
        with Client(url=proxy.url) as client:
            kept = client.upload(data)
        seconds = time.perf_counter() - started
        peak = rss_kb(server.proc.pid, "VmHWM")
        blob = folder / "server-home" / "storage" / "datasets" / kept.id.removeprefix("sha256:")
        same = "sha256:" + hashlib.file_digest(blob.open("rb"), "sha256").hexdigest() == digest
    finally:
        proxy.close()
        server.stop()
    growth_mb = (peak - before) / 1024
    ratio = proxy.up / size
    print(f"file            {size / 2**20:,.0f} MB, {kept.rows:,} rows")
    print(f"cut             {proxy.cuts} time(s), at {size // 2 / 2**20:,.0f} MB")
    print(f"bytes sent      {proxy.up / 2**20:,.0f} MB ({ratio:.3f}x the file)")
    print(
        f"server memory   {before / 1024:,.0f} MB before, peak {peak / 1024:,.0f} MB (+{growth_mb:,.0f} MB)"
    )
    print(f"upload time     {seconds:,.1f} s ({size / 2**20 / seconds:,.0f} MB/s, validation included)")
    print(f"kept blob       {'same sha256' if same else 'DIFFERENT sha256'}")
    ok = same and ratio < 1.1 and growth_mb < 100 and proxy.cuts == 1
    print("goals           " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
