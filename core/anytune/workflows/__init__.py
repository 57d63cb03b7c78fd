"""What drives the Client: quotes across providers, reports, drift checks, serving a model.

The layers point one way: engines (data, catalog, billing, throughput, metrics, statistics, plots) know
nothing of the Client; the Client composes them into the walk of a job; these workflows sit above it and
are what the CLI and applications call."""
