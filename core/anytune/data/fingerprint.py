"""Content fingerprints: the same data gives the same fingerprint, whatever its file's bytes look like.

The fingerprint hashes each record's canonical JSON, in order, with the format. Re-saving a file with other
line endings, key order or spacing keeps the fingerprint; changing, adding or reordering a record changes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from anytune.data.records import canonical_json


class Fingerprinter:
    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.rows = 0

    def add(self, record: Any, canonical: bytes | None = None) -> None:
        data = canonical if canonical is not None else canonical_json(record)
        self._h.update(len(data).to_bytes(8, "big"))
        self._h.update(data)
        self.rows += 1

    def hexdigest(self, fmt: str) -> str:
        h = self._h.copy()
        h.update(fmt.encode())
        return "sha256:" + h.hexdigest()
