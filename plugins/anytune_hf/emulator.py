"""An emulator of the Hugging Face APIs the backend uses, served on 127.0.0.1 (`anytune emulate hf`).

- the Hub: `whoami-v2`; model, dataset and space repos created, committed to (files sent inline: the
  emulator answers every preupload with `regular`, so no LFS or Xet transfer is needed), listed, read and
  downloaded (`resolve`), at any commit;
- Jobs: create, inspect, list (by label), cancel, logs as a server-sent stream, metrics, hardware (from the
  pricing catalog). A job *runs for real* on this machine: its command, stripped of `uv run --with ...`, is
  run with this Python (so `python -m anytune_hf.runner` trains with the local worker on CPU), with the job's
  environment and secrets and `HF_ENDPOINT` pointing back here. Stages SCHEDULING -> RUNNING -> COMPLETED |
  ERROR | CANCELED; `timeoutSeconds` (default 1800) is measured on the emulator's clock;
- AutoTrain: `/api/create_project`, `/api/version`, `/api/logs`, `/api/stop_training`, and the Space's
  runtime (`/api/spaces/{id}/runtime`: BUILDING -> RUNNING -> PAUSED). A project is trained for real too, by
  the same runner, from the dataset repo and the parameters it names.

Errors have the Hub's shape (`{"error": "..."}`, with `X-Error-Code` where the Hub sends one); faults (429,
5xx, slow or dropped answers) are injected as in anytune's other emulators.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from anytune.plugin import JobStatus, load_catalog
from anytune.testing import ApiError, Clock, EmulatorBase

USER = "alice"
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
DEFAULT_TIMEOUT_S = 1800
CANCEL_GRACE_S = 20.0
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class HubError(ApiError):
    """An error in the Hub's shape: `{"error": message}`, and its X-Error-Code header where it sends one."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(status, message)
        self.body = {"error": message}
        self.headers = {"X-Error-Code": code, "X-Error-Message": message} if code else {}


def now_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Repo:
    kind: str
    repo_id: str
    private: bool = True
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (sha, files), oldest first

    def files(self, revision: str | None = None) -> tuple[str, dict[str, bytes]]:
        if not self.commits:
            return "0" * 40, {}
        if revision in (None, "main"):
            return self.commits[-1]
        for sha, files in self.commits:
            if sha == revision:
                return sha, files
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


@dataclass
class Job:
    id: str
    spec: dict[str, Any]
    created: float
    stage: str = "SCHEDULING"
    message: str | None = None
    started: float | None = None
    finished: float | None = None
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)
    workdir: str | None = None
    space: str | None = None  # an AutoTrain project: its Space id
    retry: int = 0  # runs after the first (the spec's `attempts` allows attempts - 1)

    @property
    def status(self) -> str:  # the conformance convention: `status` is the provider's status
        return self.stage


def local_command(command: list[str]) -> list[str]:
    """The job's command as this machine runs it: `uv run [--with X ...] [--] python ...` -> this Python."""
    cmd = list(command)
    if cmd[:2] == ["uv", "run"]:
        i = 2
        while i < len(cmd) and cmd[i] not in ("--", "python"):
            i += 2 if cmd[i] in ("--with", "--python", "--from") else 1
        cmd = cmd[i + 1 :] if i < len(cmd) and cmd[i] == "--" else cmd[i:]
    if cmd and cmd[0] in ("python", "python3"):
        cmd[0] = sys.executable
    return cmd


class HubEmulator(EmulatorBase):
    statuses: ClassVar[dict[str, JobStatus]] = {
        "SCHEDULING": JobStatus.QUEUED,
        "RUNNING": JobStatus.RUNNING,
        "COMPLETED": JobStatus.SUCCEEDED,
        "ERROR": JobStatus.FAILED,
        "CANCELED": JobStatus.CANCELLED,
        "DELETED": JobStatus.CANCELLED,
    }
    create_route: ClassVar[tuple[str, str] | None] = ("POST", r"^/api/jobs/[^/]+$")

    def __init__(
        self, *, api_key: str | None = None, clock: Clock | None = None, step_seconds: float = 1.0
    ) -> None:
        from starlette.routing import Route

        self.step_seconds = step_seconds
        self.repos: dict[tuple[str, str], Repo] = {}
        self.jobs: dict[str, Job] = {}
        self.prices: dict[str, float] = {}  # flavor -> price per hour, where it differs from the catalog
        self.root = Path(tempfile.mkdtemp(prefix="anytune-hf-emulator-"))
        r = Route
        routes = [
            r("/api/whoami-v2", self.whoami),
            r("/api/validate-yaml", self.validate_yaml, methods=["POST"]),
            r("/api/repos/create", self.create_repo, methods=["POST"]),
            r("/api/jobs/hardware", self.hardware),
            r("/api/jobs/{ns}", self.jobs_route, methods=["GET", "POST"]),
            r("/api/jobs/{ns}/{job_id}", self.get_job),
            r("/api/jobs/{ns}/{job_id}/cancel", self.cancel_job, methods=["POST"]),
            r("/api/jobs/{ns}/{job_id}/duplicate", self.duplicate_job, methods=["POST"]),
            r("/api/jobs/{ns}/{job_id}/labels", self.job_labels, methods=["PUT"]),
            r("/api/jobs/{ns}/{job_id}/logs", self.job_logs),
            r("/api/jobs/{ns}/{job_id}/metrics", self.job_metrics),
            r("/api/create_project", self.create_project, methods=["POST"]),
            r("/api/version", self.autotrain_version),
            r("/api/logs", self.autotrain_logs, methods=["POST"]),
            r("/api/stop_training", self.stop_training, methods=["POST"]),
            r("/api/spaces/{ns}/{name}/runtime", self.space_runtime),
            r("/api/{kind}s/{ns}/{name}", self.repo_info),
            r("/api/{kind}s/{ns}/{name}/revision/{rev}", self.repo_info),
            r("/api/{kind}s/{ns}/{name}/tree/{rev}", self.repo_tree),
            r("/api/{kind}s/{ns}/{name}/tree/{rev}/{path:path}", self.repo_tree),
            r("/api/{kind}s/{ns}/{name}/preupload/{rev}", self.preupload, methods=["POST"]),
            r("/api/{kind}s/{ns}/{name}/commit/{rev}", self.commit, methods=["POST"]),
            r("/datasets/{ns}/{name}/resolve/{rev}/{path:path}", self.resolve, methods=["GET", "HEAD"]),
            r("/spaces/{ns}/{name}/resolve/{rev}/{path:path}", self.resolve, methods=["GET", "HEAD"]),
            r("/{ns}/{name}/resolve/{rev}/{path:path}", self.resolve, methods=["GET", "HEAD"]),
        ]
        super().__init__(api_key=api_key, clock=clock, routes=routes, api_prefix="/api")
        self.app.error_body = lambda status, message, code: {"error": message}

    def hold(self, job_id: str, status: str) -> None:
        with self._lock:
            self.jobs[job_id].stage = status
            self.held.add(job_id)

    # ------------------------------------------------------------------------------------- plumbing

    async def _call(self, fn: Any, *args: Any) -> Any:
        """A handler run off the event loop: stopping a job waits for its process, and the other requests
        (the job's own uploads among them) must be answered meanwhile."""
        import anyio

        return await anyio.to_thread.run_sync(lambda: self._handle(fn, *args))

    def _user(self, request: Any) -> str:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not token or (self.api_key is not None and token != self.api_key):
            raise HubError(401, "Invalid credentials in Authorization header")
        return USER

    def _repo(self, kind: str, repo_id: str) -> Repo:
        repo = self.repos.get((kind, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found for {kind}s/{repo_id}", "RepoNotFound")
        return repo

    @staticmethod
    def _kind(value: str) -> str:
        if value not in ("model", "dataset", "space"):
            raise HubError(404, f"no such repo type: {value}s")
        return value

    async def _raw_json(self, request: Any) -> Any:
        try:
            return json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            raise HubError(400, "the body is not JSON") from None

    # ------------------------------------------------------------------------------------------ Hub

    async def whoami(self, request: Any) -> Any:
        def answer() -> Any:
            name = self._user(request)
            return self._json(
                200,
                {
                    "type": "user",
                    "id": "6" * 24,
                    "name": name,
                    "fullname": name.title(),
                    "orgs": [],
                    "auth": {
                        "type": "access_token",
                        "accessToken": {"displayName": "anytune", "role": "write"},
                    },
                },
            )

        return await self._call(answer)

    async def validate_yaml(self, request: Any) -> Any:
        return self._json(200, {"errors": [], "warnings": []})

    async def create_repo(self, request: Any) -> Any:
        body = await self._raw_json(request)

        def create() -> Any:
            user = self._user(request)
            kind = self._kind(body.get("type") or "model")
            repo_id = f"{body.get('organization') or user}/{body['name']}"
            url = f"{str(request.base_url).rstrip('/')}/{PREFIX[kind]}{repo_id}"
            if (kind, repo_id) in self.repos:
                return self._json(409, {"error": f"You already created this {kind} repo", "url": url})
            private = body.get("private", body.get("visibility", "private") != "public")
            self.repos[(kind, repo_id)] = Repo(kind, repo_id, private=bool(private))
            return self._json(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

        return await self._call(create)

    async def repo_info(self, request: Any) -> Any:
        p = request.path_params

        def info() -> Any:
            self._user(request)
            repo = self._repo(self._kind(p["kind"]), f"{p['ns']}/{p['name']}")
            sha, files = repo.files(p.get("rev"))
            return self._json(
                200,
                {
                    "id": repo.repo_id,
                    "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                    "sha": sha,
                    "private": repo.private,
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                    "lastModified": now_iso(time.time()),
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                },
            )

        return await self._call(info)

    async def repo_tree(self, request: Any) -> Any:
        p = request.path_params

        def tree() -> Any:
            self._user(request)
            repo = self._repo(self._kind(p["kind"]), f"{p['ns']}/{p['name']}")
            _, files = repo.files(p["rev"])
            prefix = (p.get("path") or "").strip("/")
            entries = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in sorted(files.items())
                if not prefix or name.startswith(prefix + "/")
            ]
            return self._json(200, entries)

        return await self._call(tree)

    async def preupload(self, request: Any) -> Any:
        body = await self._raw_json(request)
        p = request.path_params

        def modes() -> Any:
            self._user(request)
            self._repo(self._kind(p["kind"]), f"{p['ns']}/{p['name']}")
            files = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                for f in body.get("files", [])
            ]
            return self._json(200, {"files": files})

        return await self._call(modes)

    async def commit(self, request: Any) -> Any:
        raw = await request.body()
        p = request.path_params

        def commit() -> Any:
            self._user(request)
            repo = self._repo(self._kind(p["kind"]), f"{p['ns']}/{p['name']}")
            _, current = repo.files()
            files = dict(current)
            digest = hashlib.sha1(repo.commits[-1][0].encode() if repo.commits else b"")
            for line in raw.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                value = item.get("value", {})
                if item.get("key") == "file":
                    content = value.get("content", "")
                    data = (
                        base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    )
                    files[value["path"]] = data
                    digest.update(value["path"].encode() + data)
                elif item.get("key") == "deletedFile":
                    files.pop(value["path"], None)
                    digest.update(b"-" + value["path"].encode())
                elif item.get("key") == "lfsFile":
                    raise HubError(
                        400, "the emulator takes files inline only (it answers preupload with regular)"
                    )
            sha = digest.hexdigest()
            repo.commits.append((sha, files))
            url = f"{str(request.base_url).rstrip('/')}/{PREFIX[repo.kind]}{repo.repo_id}/commit/{sha}"
            return self._json(200, {"commitUrl": url, "commitOid": sha, "pullRequestUrl": None})

        return await self._call(commit)

    async def resolve(self, request: Any) -> Any:
        from starlette.responses import Response

        p = request.path_params
        path = request.url.path
        kind = (
            "dataset"
            if path.startswith("/datasets/")
            else "space"
            if path.startswith("/spaces/")
            else "model"
        )

        def resolve() -> Any:
            self._user(request)
            repo = self._repo(kind, f"{p['ns']}/{p['name']}")
            sha, files = repo.files(p["rev"])
            data = files.get(p["path"])
            if data is None:
                raise HubError(404, f"Entry not found: {p['path']}", "EntryNotFound")
            headers = {
                "X-Repo-Commit": sha,
                "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                "Content-Length": str(len(data)),
            }
            body = b"" if request.method == "HEAD" else data
            return Response(body, headers=headers, media_type="application/octet-stream")

        return await self._call(resolve)

    # ----------------------------------------------------------------------------------------- Jobs

    async def hardware(self, request: Any) -> Any:
        def listing() -> Any:
            catalog = load_catalog()
            out = []
            for name in catalog.hardware_for("hf"):
                entry, hw = catalog.price("hf", hardware=name), catalog.hardware[name]
                if entry is None:
                    continue
                accelerator = (
                    {
                        "type": "gpu",
                        "model": hw.gpu,
                        "quantity": str(hw.gpus),
                        "vram": f"{hw.memory_gb:g} GB",
                        "manufacturer": "Nvidia",
                    }
                    if hw.kind == "gpu"
                    else None
                )
                out.append(
                    {
                        "name": entry.flavor or name,
                        "prettyName": entry.flavor or name,
                        "cpu": f"{hw.cores or 8} vCPU",
                        "ram": f"{hw.memory_gb or 32:g} GB",
                        "accelerator": accelerator,
                        "unitCostMicroUSD": round(
                            self.prices.get(entry.flavor or name, entry.price) / 60 * 1e6
                        ),
                        "unitCostUSD": self.prices.get(entry.flavor or name, entry.price) / 60,
                        "unitLabel": "minute",
                    }
                )
            return self._json(200, out)

        return await self._call(listing)

    def _job_json(self, job: Job, base: str) -> dict[str, Any]:
        spec = job.spec
        ends = job.finished or self.clock.now()
        return {
            "id": job.id,
            "createdAt": now_iso(job.created),
            "startedAt": now_iso(job.started) if job.started else None,
            "finishedAt": now_iso(job.finished) if job.finished else None,
            "dockerImage": spec.get("dockerImage"),
            "spaceId": spec.get("spaceId"),
            "command": spec.get("command"),
            "arguments": spec.get("arguments", []),
            "environment": spec.get("environment", {}),
            "secrets": {k: "" for k in spec.get("secrets", {})},  # names only, as the Hub shows them
            "flavor": spec.get("flavor", "cpu-basic"),
            "labels": spec.get("labels", {}),
            "volumes": None,
            "status": {"stage": job.stage, "message": job.message, "exposeUrls": None, "sshUrl": None},
            "durations": {
                "schedulingSecs": int((job.started or ends) - job.created),
                "runningSecs": int(ends - job.started) if job.started else 0,
                "totalSecs": int(ends - job.created),
            },
            "owner": {"id": "6" * 24, "name": USER, "type": "user"},
            "initiator": {"type": "user", "id": "6" * 24, "name": USER},
            "network": None,
            "retry": job.retry,
            "expose": {"ports": [], "portsPublic": []},
            "url": f"{base}/jobs/{USER}/{job.id}",
        }

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise HubError(404, f"Job {job_id} not found")
        return job

    async def jobs_route(self, request: Any) -> Any:
        base = str(request.base_url).rstrip("/")
        if request.method == "GET":

            def listing() -> Any:
                self._user(request)
                labels = [v.split("=", 1) for v in request.query_params.getlist("label")]
                stages = set(request.query_params.getlist("stage"))
                out = [
                    self._job_json(j, base)
                    for j in self.jobs.values()
                    if all(j.spec.get("labels", {}).get(k) == v for k, v in labels)
                    and (not stages or j.stage in stages)
                ]
                return self._json(200, out)

            return await self._call(listing)
        body = await self._raw_json(request)

        def create() -> Any:
            self._user(request)
            if not body.get("command") or not (body.get("dockerImage") or body.get("spaceId")):
                raise HubError(400, "a job needs a command and a dockerImage or spaceId")
            _check_job_spec(body)
            job = Job(id=uuid.uuid4().hex[:24], spec={**body, "endpoint": base}, created=self.clock.now())
            self.jobs[job.id] = job
            return self._json(200, self._job_json(job, base))

        return await self._call(create)

    async def get_job(self, request: Any) -> Any:
        base = str(request.base_url).rstrip("/")

        def get() -> Any:
            self._user(request)
            job = self._job(request.path_params["job_id"])
            self.clock.on_poll()
            self._advance(job)
            return self._json(200, self._job_json(job, base))

        return await self._call(get)

    async def duplicate_job(self, request: Any) -> Any:
        """`rerun_job`: a new job with the same spec (its retry and resource settings included)."""
        base = str(request.base_url).rstrip("/")

        def duplicate() -> Any:
            self._user(request)
            old = self._job(request.path_params["job_id"])
            job = Job(id=uuid.uuid4().hex[:24], spec=dict(old.spec), created=self.clock.now())
            self.jobs[job.id] = job
            return self._json(200, self._job_json(job, base))

        return await self._call(duplicate)

    async def job_labels(self, request: Any) -> Any:
        """`update_job_labels`: the user's labels replaced (keys and values of at most 100 characters,
        letters, digits, `-` and `_`)."""
        base = str(request.base_url).rstrip("/")
        body = await self._raw_json(request)

        def update() -> Any:
            self._user(request)
            job = self._job(request.path_params["job_id"])
            labels = body.get("labels")
            if not isinstance(labels, dict) or not all(
                isinstance(x, str) and LABEL.fullmatch(x) for pair in labels.items() for x in pair
            ):
                raise HubError(400, "labels: keys and values of 1-100 letters, digits, '-' or '_'")
            job.spec["labels"] = dict(labels)
            return self._json(200, self._job_json(job, base))

        return await self._call(update)

    async def cancel_job(self, request: Any) -> Any:
        def cancel() -> Any:
            self._user(request)
            job = self._job(request.path_params["job_id"])
            if job.stage not in TERMINAL:
                self._stop(job, "CANCELED", None)
            return self._json(200, {})

        return await self._call(cancel)

    async def job_logs(self, request: Any) -> Any:
        from starlette.responses import Response

        def logs() -> Any:
            self._user(request)
            job = self._job(request.path_params["job_id"])
            self._advance(job)
            lines = [] if job.started is None else [(now_iso(job.started), "===== Job started =====")]
            lines += list(job.logs)
            tail = request.query_params.get("tail")
            if tail is not None:
                lines = lines[-int(tail) :]
            body = "".join(f"data: {json.dumps({'timestamp': ts, 'data': line})}\n\n" for ts, line in lines)
            # the client ends its replay at the first line logged after this Date (+1 s): it must be now
            date = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
            return Response(body, media_type="text/event-stream", headers={"Date": date})

        return await self._call(logs)

    async def job_metrics(self, request: Any) -> Any:
        from starlette.responses import Response

        def metrics() -> Any:
            self._user(request)
            job = self._job(request.path_params["job_id"])
            if job.stage in TERMINAL:
                raise HubError(406, "Job is finished")
            sample = {
                "cpu_usage_pct": 100 if job.stage == "RUNNING" else 0,
                "cpu_millicores": 2000,
                "memory_used_bytes": 0,
                "memory_total_bytes": 16 * 2**30,
                "rx_bps": 0,
                "tx_bps": 0,
                "gpus": {},
                "replica": job.id[:5],
            }
            return Response(f"event: metric\ndata: {json.dumps(sample)}\n\n", media_type="text/event-stream")

        return await self._call(metrics)

    # ------------------------------------------------------------------------------- running a job

    def _advance(self, job: Job) -> None:
        if job.id in self.held or job.stage in TERMINAL:
            return
        now = self.clock.now()
        if job.stage == "SCHEDULING":
            if now - job.created >= self.step_seconds:
                self._start(job, now)
            return
        timeout = float(job.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT_S)
        if job.started is not None and now - job.started > timeout:
            self._stop(job, "ERROR", f"Job timeout: exceeded {timeout:g} seconds")
            return
        if job.process is not None and job.process.poll() is not None:
            if job.reader is not None:
                job.reader.join(timeout=10)
            code = job.process.returncode
            if code != 0 and job.retry + 1 < int(job.spec.get("attempts") or 1):  # another attempt
                job.retry += 1
                job.logs.append(
                    (now_iso(now), f"===== Job failed with exit code: {code}; retry {job.retry} =====")
                )
                self._start(job, now)
                return
            job.stage = "COMPLETED" if code == 0 else "ERROR"
            job.message = None if code == 0 else f"Job failed with exit code: {code}"
            job.finished = now

    def _start(self, job: Job, now: float) -> None:
        spec = job.spec
        job.workdir = str(self.root / job.id)
        os.makedirs(job.workdir, exist_ok=True)
        env = dict(os.environ)
        env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
        env.update({k: str(v) for k, v in (spec.get("secrets") or {}).items()})
        env.update(
            {"HF_ENDPOINT": spec["endpoint"], "HF_HUB_OFFLINE": "0", "ANYTUNE_HF_WORKDIR": job.workdir}
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        command = local_command([*spec["command"], *(spec.get("arguments") or [])])
        job.stage, job.started = "RUNNING", now
        try:
            job.process = subprocess.Popen(
                command,
                cwd=job.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            job.stage, job.message, job.finished = "ERROR", f"could not start {command[0]}: {exc}", now
            return

        def read(proc: subprocess.Popen[bytes] = job.process) -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                job.logs.append((now_iso(time.time()), line))

        job.reader = threading.Thread(target=read, daemon=True)
        job.reader.start()

    def _stop(self, job: Job, stage: str, message: str | None) -> None:
        """Stop the job's process as Hugging Face does (SIGTERM, then SIGKILL after a grace period)."""
        proc = job.process
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                if not self._exited(proc, CANCEL_GRACE_S):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            except ProcessLookupError:
                pass
        if job.reader is not None:
            job.reader.join(timeout=10)
        job.stage, job.message, job.finished = stage, message, self.clock.now()

    def _exited(self, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        """Whether `proc` ends within `timeout`, waited for off the state lock: a job that stops may still
        call the Hub (the runner pushes the checkpoint its trainer saved on SIGTERM), and held the lock would
        keep it waiting until the grace period ran out and it was killed."""
        waiting = threading.Condition(
            self._lock
        )  # wait() lets go of the (re-entrant) lock, then takes it back
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                with waiting:
                    waiting.wait(min(0.1, left))
            except RuntimeError:  # not called under the lock: a plain wait
                time.sleep(min(0.1, left))
        return True

    def close(self) -> None:
        """Stop every job still running (the server is going away)."""
        with self._lock:
            for job in self.jobs.values():
                if job.stage not in TERMINAL:
                    self._stop(job, "CANCELED", "the emulator stopped")

    # ------------------------------------------------------------------------------------- AutoTrain

    async def autotrain_version(self, request: Any) -> Any:
        return self._json(200, {"version": "0.8.36"})

    async def create_project(self, request: Any) -> Any:
        from anytune_hf.autotrain import emulated_project

        body = await self._raw_json(request)
        base = str(request.base_url).rstrip("/")

        def create() -> Any:
            try:
                user = self._user(request)
            except HubError:
                return self._json(401, {"detail": "Invalid or expired token"})
            problem, job_spec = emulated_project(body, user)
            if problem:
                return self._json(422, {"detail": [{"loc": ["body"], "msg": problem, "type": "value_error"}]})
            space = f"{user}/autotrain-{body['project_name']}"
            if ("space", space) in self.repos:
                return self._json(500, {"detail": f"Space {space} already exists"})
            self.repos[("space", space)] = Repo("space", space)
            job = Job(id=uuid.uuid4().hex[:24], spec={**job_spec, "endpoint": base}, created=self.clock.now())
            job.space = space
            self.jobs[job.id] = job
            return self._json(200, {"message": "Project created", "job_id": space, "success": True})

        return await self._call(create)

    def _space_job(self, space: str) -> Job:
        job = next((j for j in self.jobs.values() if j.space == space), None)
        if job is None:
            raise HubError(404, f"Repository Not Found for spaces/{space}", "RepoNotFound")
        return job

    async def space_runtime(self, request: Any) -> Any:
        space = f"{request.path_params['ns']}/{request.path_params['name']}"

        def runtime() -> Any:
            self._user(request)
            job = self._space_job(space)
            self.clock.on_poll()
            self._advance(job)
            stage = {
                "SCHEDULING": "BUILDING",
                "RUNNING": "RUNNING",
                "COMPLETED": "PAUSED",
                "ERROR": "RUNTIME_ERROR",
                "CANCELED": "PAUSED",
            }.get(job.stage, "PAUSED")
            flavor = job.spec.get("flavor", "cpu-basic")
            return self._json(
                200,
                {
                    "stage": stage,
                    "hardware": {"current": flavor if stage == "RUNNING" else None, "requested": flavor},
                    "gcTimeout": 604800,
                    "errorMessage": job.message if stage == "RUNTIME_ERROR" else None,
                },
            )

        return await self._call(runtime)

    async def autotrain_logs(self, request: Any) -> Any:
        body = await self._raw_json(request)

        def logs() -> Any:
            self._user(request)
            job = self._space_job(str(body.get("jid", "")))
            text = "\n".join(f"{ts}: {line}" for ts, line in job.logs)
            return self._json(200, {"logs": text, "success": True, "message": "Logs fetched successfully"})

        return await self._call(logs)

    async def stop_training(self, request: Any) -> Any:
        body = await self._raw_json(request)

        def stop() -> Any:
            self._user(request)
            job = self._space_job(str(body.get("jid", "")))
            if job.stage not in TERMINAL:
                self._stop(job, "CANCELED", "paused by stop_training")
            return self._json(200, {"message": "Training stopped", "success": True})

        return await self._call(stop)


LABEL = re.compile(r"[A-Za-z0-9_-]{1,100}")


def _check_job_spec(body: dict[str, Any]) -> None:
    """What the Hub refuses in a job's spec: no command or image, a flavor it does not rent (every one of
    huggingface_hub's `JobHardware` is in the catalog), attempts that are not a count."""
    if not body.get("command") or not (body.get("dockerImage") or body.get("spaceId")):
        raise HubError(400, "a job needs a command and a dockerImage or spaceId")
    flavors = {e.flavor or e.hardware for e in load_catalog().entries if e.provider == "hf"}
    flavor = body.get("flavor", "cpu-basic")
    if flavor not in flavors:
        raise HubError(400, f"Invalid flavor: {flavor}")
    attempts = body.get("attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise HubError(400, f"attempts: a whole number from 1 to 10, not {attempts!r}")
