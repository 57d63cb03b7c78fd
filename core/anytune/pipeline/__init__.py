"""The walk of one job, one module per stage, each a function with typed input and output:

    checks (spec, capabilities, data) -> prepare -> quote      preflight.py: the three as one -> Preflight
    -> record (the job row) -> submit -> follow (poll -> result -> register) -> evaluate

Everything before `record` may refuse, with file, line and field, and leaves nothing behind; everything
after it is resumable after a crash without a second paid job. The stages share a `Pipeline` (registry,
plugins, remembered data checks). `anytune.client.Client` is a thin front over them; `control` (cancel,
pause, resume), `derive` (continue, migrate, restart) and `export` are the verbs on a job once it exists.
"""
