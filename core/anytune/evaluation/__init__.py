"""Evaluation engines: metrics, statistics, plots and the runner that scores any backend's models through
its generate(). They know nothing of the Client; what drives them from the registry (reports, drift
checks) is in `anytune.workflows`."""
