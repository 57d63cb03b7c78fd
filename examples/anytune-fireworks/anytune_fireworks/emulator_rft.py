"""The Fireworks emulator's reinforcement fine-tuning: evaluators and RFT jobs, from Fireworks' API reference
(Create Evaluator V2, Get Evaluator, Create/Get Reinforcement Fine-tuning Job).

- `POST /v1/accounts/{a}/evaluatorsV2` (`evaluatorId`, `evaluator.criteria[].codeSnippets` with
  `fileContents`, `entryFile`, `entryFunc`): the same id again is 409; the evaluator is BUILDING, then on the
  next read ACTIVE, or BUILD_FAILED with the reason when its entry file does not compile or lacks the entry
  function (a real build would also install `requirements`; this one checks they are named only);
- an RFT job needs an ACTIVE evaluator, a READY dataset, a tunable base and a known loss method; each step the
  emulated policy answers the dataset's prompts (`practice_answers`) and the evaluator's code is run on them,
  so the reward in the metrics file is the real evaluator's mean score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anytune.testing import base_answer, practice_answers
from anytune_fireworks.emulator_errors import FireworksError

LOSS_METHODS = {"GRPO", "DAPO", "GSPO", "REINFORCE"}


@dataclass
class Evaluator:
    name: str
    body: dict[str, Any]
    created: str
    state: str = "BUILDING"
    message: str = ""
    entry: Any = field(default=None, repr=False)

    def obj(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **{
                k: v
                for k, v in self.body.items()
                if k in ("displayName", "description", "criteria", "requirements")
            },
            "createTime": self.created,
            "state": self.state,
            "status": {
                "code": "OK" if self.state != "BUILD_FAILED" else "INVALID_ARGUMENT",
                "message": self.message,
            },
        }

    def build(self) -> None:
        """What Fireworks' build finds wrong: an entry file that does not compile or lacks its function."""
        if self.state != "BUILDING":
            return
        try:
            [criterion] = self.body["criteria"]
            snippets = criterion["codeSnippets"]
            source = snippets["fileContents"][snippets["entryFile"]]
            namespace: dict[str, Any] = {"__name__": "evaluator"}
            exec(compile(source, snippets["entryFile"], "exec"), namespace)
            self.entry = namespace[snippets["entryFunc"]]
            self.state = "ACTIVE"
        except Exception as exc:  # the build log's last line
            self.state, self.message = "BUILD_FAILED", f"{type(exc).__name__}: {exc}"


def create_evaluator(table: dict[str, Evaluator], account: str, body: dict[str, Any], now: str) -> Evaluator:
    ident = str(body.get("evaluatorId") or "")
    evaluator = body.get("evaluator")
    if not ident or not isinstance(evaluator, dict):
        raise FireworksError(400, "evaluatorId and evaluator are required")
    criteria = evaluator.get("criteria")
    if not isinstance(criteria, list) or len(criteria) != 1 or criteria[0].get("type") != "CODE_SNIPPETS":
        raise FireworksError(400, "evaluator.criteria: one CODE_SNIPPETS criterion is required")
    snippets = criteria[0].get("codeSnippets") or {}
    if snippets.get("entryFile") not in (snippets.get("fileContents") or {}) or not snippets.get("entryFunc"):
        raise FireworksError(
            400, "codeSnippets: entryFile must be one of fileContents, and entryFunc is required"
        )
    name = f"accounts/{account}/evaluators/{ident}"
    if name in table:
        raise FireworksError(409, f"evaluator {name} already exists")
    table[name] = Evaluator(name, evaluator, now)
    return table[name]


def check_rft_job(body: dict[str, Any], evaluators: dict[str, Evaluator]) -> None:
    """What Fireworks refuses in an RFT job's create beyond the fields SFT shares."""
    evaluator = evaluators.get(str(body.get("evaluator") or ""))
    if evaluator is None:
        raise FireworksError(400, f"evaluator {body.get('evaluator')!r} not found")
    evaluator.build()
    if evaluator.state != "ACTIVE":
        raise FireworksError(400, f"evaluator {evaluator.name} is {evaluator.state}, not ACTIVE")
    method = (body.get("lossConfig") or {}).get("method", "GRPO")
    if method not in LOSS_METHODS:
        raise FireworksError(400, f'invalid value for enum field method: "{method}"')
    n = (body.get("inferenceParameters") or {}).get("responseCandidatesCount")
    if n is not None and not 2 <= int(n) <= 64:
        raise FireworksError(400, "inferenceParameters.responseCandidatesCount must be between 2 and 64")


def reward_point(
    evaluator: Evaluator, records: list[dict[str, Any]], base: str, step: int, total: int
) -> float:
    """The evaluator's mean score of the emulated policy's answers at this step."""
    answers = practice_answers(
        [str(r.get("ground_truth", "")) for r in records], step, total, base_answer(base)
    )
    scores = []
    for record, answer in zip(records, answers, strict=True):
        row = {k: v for k, v in record.items() if k not in ("messages", "ground_truth")}
        messages = [*record["messages"], {"role": "assistant", "content": answer}]
        result = evaluator.entry(messages=messages, ground_truth=record.get("ground_truth"), **row)
        score = result["score"] if isinstance(result, dict) else getattr(result, "score", result)
        scores.append(float(score))
    return round(sum(scores) / max(1, len(scores)), 4)


def rows_for(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An RFT dataset's rows (prompt and ground truth); a dataset without ground truth has none."""
    return [r for r in records if "ground_truth" in r and isinstance(r.get("messages"), list)]


__all__ = ["Evaluator", "check_rft_job", "create_evaluator", "reward_point", "rows_for"]
