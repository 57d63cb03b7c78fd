"""The second process of a quote (`anytune.workflows.compare.SecondProcess`): the rows it is given, quoted
with the installed plugins, as `quote()` quotes them in the first.

stdin, one JSON line each: {"spec": JobSpec, "rows": [{"provider", "hardware", "backend"}], "prices": [files],
"out": path}, then the first process's validation reports (`DataChecks.known`; [] for none, and an
end of input counts as none). The quotes and warnings are written to `out` as JSON. Exit 0 only when they
are all there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from anytune.cost.catalog import extra_prices
from anytune.pipeline.context import Pipeline
from anytune.spec import JobSpec
from anytune.workflows.compare import Target, _Quoter


def main() -> None:
    request = json.loads(sys.stdin.buffer.readline())
    spec = JobSpec.model_validate(request["spec"])
    rows = [Target(**row) for row in request["rows"]]
    pipeline = Pipeline()
    pipeline.plugins.backend_names()  # the plugins load while the first process validates
    pipeline.data.adopt(json.loads(sys.stdin.buffer.readline() or b"[]"))
    with extra_prices(request["prices"]):
        quoter = _Quoter(pipeline, spec)
        quotes = [q.model_dump(mode="json") for q in quoter.rows(rows)]
    out = Path(request["out"])
    out.write_text(json.dumps({"quotes": quotes, "warnings": sorted(quoter.warnings)}), encoding="utf-8")


if __name__ == "__main__":
    main()
