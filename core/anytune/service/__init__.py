"""The orchestration service: a REST API (`app.py`) on top of the Client, with API tokens and idempotent
creates kept in the registry (`anytune.registry.access`). `anytune server` runs it."""
