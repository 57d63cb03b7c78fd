"""What runs inside a Hugging Face job: `python -m anytune_hf.runner`.

It fetches the job's request and data from the private dataset repo the backend staged them in, runs the
local backend's training worker on them (so every method and adapter of the local backend works here, QLoRA
on CUDA included), and pushes what it makes to the output model repo: each complete checkpoint as it is
saved (what `anytune jobs resume` restarts from), then the adapter (or merged weights), a model card with
anytune's lineage, and `anytune_result.json`.

The job's log is its only channel back: the worker's events, its status and the pushed result are printed as
one JSON line each behind a marker, and the backend reads them from the log stream. The token arrives as the
job secret HF_TOKEN; everything else is plain environment:

    ANYTUNE_HF_JOB          anytune's job id
    ANYTUNE_HF_DATA_REPO    the dataset repo holding the request and the data
    ANYTUNE_HF_REQUEST      the request's path in it (or ANYTUNE_HF_REQUEST_JSON: the request itself)
    ANYTUNE_HF_OUTPUT_REPO  the model repo to push to
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

EVENT = "anytune-event "
STATUS = "anytune-status "
RESULT = "anytune-result "
CHECKPOINTS = "checkpoints"
RESULT_FILE = "anytune_result.json"


_LOG = threading.Lock()


def say(marker: str, payload: dict[str, Any]) -> None:
    """One marked line, written whole: the backend finds it by its marker at the start of a log line."""
    write_line(marker + json.dumps(payload, default=str))


def write_line(text: str) -> None:
    # one write per line under a lock: print() writes the text and its newline apart, and a line of the
    # worker's output landing between them glued itself to an event line in the job's log
    with _LOG:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def forward_output(stream: Any) -> None:
    """Copy the worker's output to the job's log line by line, so only this process writes the log."""
    for raw in iter(stream.readline, b""):
        write_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
    stream.close()


def split_repo_path(uri: str) -> tuple[str, str]:
    """`hf://owner/name/some/path` -> ("owner/name", "some/path")."""
    owner, name, *rest = uri.removeprefix("hf://").split("/")
    return f"{owner}/{name}", "/".join(rest)


def model_card(request: dict[str, Any], result: dict[str, Any]) -> str:
    spec = request["spec"]
    base = result.get("base_model") or spec["base_model"]
    library = "peft" if result.get("kind") == "adapter" else "transformers"
    front = {
        "base_model": base if "/" in base and not base.startswith(("/", ".")) else None,
        "library_name": library,
        "tags": ["anytune", spec["method"]["type"], result.get("adapter_type", "")],
    }
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in front.items() if v), "---", ""]
    data = request["prepared"]["data"]["train"]
    lines += [
        f"# {spec.get('name') or base}",
        "",
        f"Fine-tuned with [anytune](https://github.com/anytune) on Hugging Face Jobs: {spec['method']['type']} "
        f"with {result.get('adapter_type')} on {base}.",
        "",
        "## Lineage",
        "",
        f"- anytune job: `{request['job_id']}`",
        f"- training data: {data['rows']} rows, fingerprint `{data['fingerprint']}`",
        f"- steps: {result.get('steps')}, trainable parameters: {result.get('trainable_parameters')}",
        f"- metrics: {json.dumps(result.get('metrics', {}))}",
        "",
    ]
    return "\n".join(lines)


class Runner:
    def __init__(self, env: dict[str, str], work: Path) -> None:
        from huggingface_hub import HfApi

        self.api = HfApi(endpoint=env.get("HF_ENDPOINT") or None, token=env.get("HF_TOKEN") or None)
        self.job_id = env["ANYTUNE_HF_JOB"]
        self.data_repo = env["ANYTUNE_HF_DATA_REPO"]
        self.request_path = env.get("ANYTUNE_HF_REQUEST", "")
        self.request_json = env.get("ANYTUNE_HF_REQUEST_JSON")  # given whole (the AutoTrain emulator does)
        self.output_repo = env["ANYTUNE_HF_OUTPUT_REPO"]
        self.work = work
        self.pushed: set[str] = set()

    def fetch(self, repo: str, path: str, repo_type: str = "dataset") -> str:
        return self.api.hf_hub_download(repo, path, repo_type=repo_type, local_dir=self.work / "inputs")

    def request(self) -> dict[str, Any]:
        text = self.request_json or Path(self.fetch(self.data_repo, self.request_path)).read_text()
        request = json.loads(text)
        for ref in request["prepared"]["data"].values():
            if ref:
                ref["path"] = self.fetch(self.data_repo, ref["path"])
        local = request["spec"].setdefault("provider_options", {}).setdefault("local", {})
        resume = local.get("resume_from")
        if isinstance(resume, str) and resume.startswith("hf://"):
            repo, path = split_repo_path(resume)
            folder = self.api.snapshot_download(
                repo, allow_patterns=[f"{path}/*"], local_dir=self.work / "resume"
            )
            local["resume_from"] = str(Path(folder) / path)
            say(EVENT, {"kind": "log", "level": "info", "message": f"resuming from {resume}", "data": {}})
        return request

    def push_checkpoints(self, folder: Path) -> None:
        """Every complete checkpoint not pushed yet (the trainer writes trainer_state.json last)."""
        for checkpoint in sorted(folder.glob("checkpoint-*")):
            if checkpoint.name in self.pushed or not (checkpoint / "trainer_state.json").exists():
                continue
            try:
                self.api.upload_folder(
                    repo_id=self.output_repo,
                    folder_path=str(checkpoint),
                    path_in_repo=f"{CHECKPOINTS}/{checkpoint.name}",
                    commit_message=f"anytune {self.job_id}: {checkpoint.name}",
                )
            except FileNotFoundError:  # the trainer removed it meanwhile (it keeps the last two): skip it
                continue
            self.pushed.add(checkpoint.name)
            step = int(checkpoint.name.rsplit("-", 1)[1])
            uri = f"hf://{self.output_repo}/{CHECKPOINTS}/{checkpoint.name}"
            say(
                EVENT,
                {"kind": "checkpoint", "level": "info", "message": f"pushed {uri}", "data": {"step": step}},
            )

    def push_result(self, request: dict[str, Any], result: dict[str, Any]) -> str:
        from huggingface_hub import CommitOperationAdd

        adapter = Path(result["adapter_path"])
        operations = [
            CommitOperationAdd(path_in_repo=str(p.relative_to(adapter)), path_or_fileobj=str(p))
            for p in sorted(adapter.rglob("*"))
            if p.is_file() and p.name != "README.md"  # peft's placeholder card: anytune writes its own
        ]
        if result.get("merged_path"):
            merged = Path(result["merged_path"])
            operations += [
                CommitOperationAdd(path_in_repo=f"merged/{p.relative_to(merged)}", path_or_fileobj=str(p))
                for p in sorted(merged.rglob("*"))
                if p.is_file()
            ]
        shown = {
            **result,
            "adapter_path": ".",
            "merged_path": "merged" if result.get("merged_path") else None,
        }
        operations += [
            CommitOperationAdd(
                path_in_repo=RESULT_FILE, path_or_fileobj=json.dumps(shown, indent=2).encode()
            ),
            CommitOperationAdd(
                path_in_repo="README.md", path_or_fileobj=model_card(request, result).encode()
            ),
        ]
        commit = self.api.create_commit(
            repo_id=self.output_repo, operations=operations, commit_message=f"anytune {self.job_id}: result"
        )
        return str(commit.oid)

    def run(self) -> int:
        from anytune.plugin import JobSpec
        from anytune_local.jobdir import JobDir
        from anytune_local.launch import worker_command

        request = self.request()
        self.api.create_repo(self.output_repo, private=True, exist_ok=True)
        jobdir = JobDir(self.work / "job")
        jobdir.create(request)
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        command = worker_command(JobSpec.model_validate(request["spec"]), jobdir.path)
        proc = subprocess.Popen(
            command, cwd=jobdir.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        copier = threading.Thread(target=forward_output, args=(proc.stdout,), daemon=True)
        copier.start()

        def forward(signum: int, _frame: Any) -> None:  # HF stops a job with SIGTERM: stop at a step boundary
            proc.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        offset, status = 0, None
        while True:
            done = proc.poll() is not None
            events, offset = jobdir.read_events(offset)
            for event in events:
                say(EVENT, event)
            current = jobdir.read_status()
            shown = {k: current.get(k) for k in ("state", "step", "total_steps", "error")}
            if shown != status:
                say(STATUS, shown)
                status = shown
            self.push_checkpoints(jobdir.path / CHECKPOINTS)
            if done:
                break
            time.sleep(1.0)
        copier.join(timeout=10)  # the worker has exited: its last lines (a traceback) go out first
        final = jobdir.read_status()
        if final.get("state") != "succeeded":
            write_line(f"anytune: training ended {final.get('state')}: {final.get('error') or ''}")
            return 0 if final.get("state") == "cancelled" else 1
        result = json.loads(jobdir.result_file.read_text())
        revision = self.push_result(request, result)
        say(RESULT, {"repo": self.output_repo, "revision": revision, "result": result})
        return 0


def main() -> int:
    work = Path(os.environ.get("ANYTUNE_HF_WORKDIR") or Path.cwd() / "anytune-job")
    work.mkdir(parents=True, exist_ok=True)
    return Runner(dict(os.environ), work).run()


if __name__ == "__main__":
    sys.exit(main())
