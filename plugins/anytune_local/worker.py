"""The training worker: `python -m anytune_local.worker JOB_DIR`.

Runs in its own process (and session), so the caller stays responsive and a job outlives the command that
started it. SIGTERM, SIGINT or a `cancel` file stop it at the next step boundary. Whatever happens, it ends
by writing a terminal status: succeeded, cancelled, or failed with the error.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback

from anytune_local.jobdir import JobDir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m anytune_local.worker JOB_DIR", file=sys.stderr)
        return 2
    jobdir = JobDir(argv[0])
    from anytune_local.launch import is_main_process

    main_process = is_main_process()
    if not main_process:  # other ranks of a distributed run train; only rank 0 writes the job folder
        jobdir.emit = lambda *a, **k: None  # type: ignore[method-assign]
        jobdir.write_status = lambda *a, **k: None  # type: ignore[method-assign]
    stop = {"asked": False}

    def on_signal(signum, _frame):  # type: ignore[no-untyped-def]
        stop["asked"] = True
        jobdir.emit(f"received {signal.Signals(signum).name}: stopping at the next step", level="warning")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def should_stop() -> bool:
        return stop["asked"] or jobdir.cancel_file.exists()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    jobdir.write_status("loading")
    started = time.monotonic()
    from anytune_local.training import Cancelled, train

    try:
        request = jobdir.read_request()
        if should_stop():
            raise Cancelled
        result = train(jobdir, request, should_stop)
    except Cancelled:
        jobdir.emit("cancelled", kind="status")
        jobdir.write_status("cancelled")
        return 0
    except BaseException as exc:  # the worker must always leave a terminal status behind
        traceback.print_exc()
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        jobdir.emit(f"failed: {message}", kind="status", level="error")
        jobdir.write_status("failed", error=message)
        return 1
    if not main_process or result is None:
        return 0
    import resource

    jobdir.write_result(
        result.model_copy(
            update={
                "wall_seconds": round(time.monotonic() - started, 3),  # the machine was busy this long
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )
    jobdir.emit("succeeded", kind="status")
    jobdir.write_status("succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
