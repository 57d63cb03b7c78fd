"""Cost: the pricing catalog, billable-token counting, throughput, quotes and comparisons.

`anytune.quote(spec, providers="all")` (= `anytune.workflows.compare.quote`) is the entry point; backends build
their quotes with `anytune.cost.quotes`; prices live in `prices.yaml` beside this file (see docs/pricing.md).
"""
