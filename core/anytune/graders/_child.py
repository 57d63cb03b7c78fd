"""The process a Python grader runs in (started by `anytune.graders.sandbox`; standard library only).

It limits itself before it reads the grader's code: an address-space limit (a 10 GB allocation fails with
MemoryError), no file may grow (RLIMIT_FSIZE 0), a CPU-time ceiling, a network namespace of its own where the
kernel lets an unprivileged process have one, and an audit hook (PEP 578, which code cannot remove) that
refuses sockets, new processes, native libraries, writes, and reads outside the grader's folder and Python's
own install. The parent adds the wall-clock limit per answer. A guard against graders that misbehave by
mistake; it is not a boundary against a hostile interpreter exploit.

Protocol: one JSON line of settings on stdin, then one JSON line per answer ({"sample", "item"}), each
answered by one line ({"score"} or {"error"}).
"""

import json
import os
import resource
import signal
import sys

_DENIED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "ctypes.", "_ctypes.")
_DENIED = {
    "os.system",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.mkdir",
    "os.chmod",
    "os.chown",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.utime",
    "os.putenv",
    "os.unsetenv",
    "shutil.rmtree",
    "shutil.move",
    "shutil.copyfile",
    "shutil.chown",
    "pty.spawn",
    "webbrowser.open",
    "urllib.Request",
    "http.client.connect",
    "ftplib.connect",
    "smtplib.connect",
    "imaplib.open",
    "poplib.connect",
    "nntplib.connect",
    "telnetlib.Telnet.open",
    "mmap.__new__",
    "resource.setrlimit",
    "resource.prlimit",
    "sys.addaudithook",
    "signal.pthread_kill",
}


class Refused(PermissionError):
    pass


def _limit(settings):
    memory = int(settings["memory_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    cpu = int(settings["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write that would grow a file fails instead of killing
    try:  # a network namespace of its own (no interface but a loopback that is down), where one is allowed
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        # CLONE_NEWNET (root), else CLONE_NEWUSER | CLONE_NEWNET (an unprivileged user, where the kernel lets one)
        if libc.unshare(0x40000000) != 0:
            libc.unshare(0x10000000 | 0x40000000)
    except Exception:  # the audit hook still refuses sockets
        pass


def _hook(folder):
    roots = {os.path.realpath(p) for p in (folder, sys.prefix, sys.base_prefix, sys.exec_prefix) if p}
    roots |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}

    def inside(path):
        if isinstance(path, int):
            return True  # an open file descriptor (stdin, stdout)
        real = os.path.realpath(os.fsdecode(path))
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)

    def audit(event, args):
        if event in _DENIED or event.startswith(_DENIED_PREFIXES):
            raise Refused(f"a grader may not use {event} (no network, no processes, no writes)")
        if event == "open":
            path, mode, flags = args
            writing = (mode and any(c in str(mode) for c in "wax+")) or (flags or 0) & (
                os.O_WRONLY | os.O_RDWR
            )
            if writing:
                raise Refused(f"a grader may not write files ({path})")
            if path is not None and not inside(path):
                raise Refused(f"a grader may read only the files in its folder ({folder}), not {path}")
        elif (
            event in ("os.listdir", "os.scandir")
            and args
            and args[0] not in (None, ".")
            and not inside(args[0])
        ):
            raise Refused(f"a grader may list only its folder ({folder}), not {args[0]}")

    sys.addaudithook(audit)


def _load(settings):
    if settings.get("path"):
        with open(settings["path"], encoding="utf-8") as fh:
            source, filename = fh.read(), settings["path"]
    else:
        source, filename = settings["source"], "<grader>"
    namespace = {"__name__": "grader", "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)
    fn = namespace.get(settings["entrypoint"])
    if not callable(fn):
        raise NameError(f"the grader defines no function {settings['entrypoint']}(sample, item)")
    return fn


def _answer(out, **fields):
    out.write(json.dumps(fields) + "\n")
    out.flush()


def main():
    out = sys.stdout
    sys.stdout = sys.stderr  # a grader's print() must not break the protocol
    settings = json.loads(sys.stdin.readline())
    os.chdir(settings["folder"])
    _limit(settings)
    _hook(settings["folder"])
    try:
        fn = _load(settings)
    except BaseException as exc:  # reported to the parent, which says what failed
        _answer(out, error=f"the grader does not load: {type(exc).__name__}: {exc}")
        return
    _answer(out, ready=True)
    for line in sys.stdin:
        call = json.loads(line)
        try:
            score = fn(call["sample"], call["item"])
        except MemoryError:
            _answer(out, error=f"the grader ran past its memory limit ({settings['memory_mb']} MB)")
            continue
        except BaseException as exc:  # a grader's error is its answer's error
            _answer(out, error=f"{type(exc).__name__}: {str(exc)[:500]}")
            continue
        if isinstance(score, bool) or not isinstance(score, int | float):
            _answer(out, error=f"the grader returned {type(score).__name__}, not a number in [0, 1]")
        elif not 0 <= score <= 1:
            _answer(out, error=f"the grader returned {score!r}, outside [0, 1]")
        else:
            _answer(out, score=float(score))


if __name__ == "__main__":
    main()
