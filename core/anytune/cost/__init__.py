"""Cost: the pricing catalog, billable-token counting, throughput, quotes and comparisons.

`anytune.quote(spec, providers="all")` (= `Client().quote`, over `anytune.workflows.compare.quote_providers`)
is the entry point; backends build their quotes with `anytune.cost.quotes`; prices live in `prices.yaml`
beside this file (see docs/pricing.md).
"""
