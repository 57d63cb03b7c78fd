"""An RFT job's grader as the AWS Lambda a Bedrock reinforcement fine-tuning job calls.

Bedrock's Lambda contract: the event is a batch `[{id, messages (the prompt and the model's answer last),
reference_answer}]`, the answer `[{id, aggregate_reward_score, metrics_list}]`. The function's code is
anytune's own scoring rules (`grader_module`) with a `lambda_handler` around them, so Bedrock rewards the
model exactly as `anytune eval` scores it. The item a grader reads is the data line's `reference_answer`
(anytune writes the line's fields there, `reference` the line's answer).

The function is named after its code's hash and created once per account and region (a retried submit finds
it), with the role the job names (provider_options.bedrock.role_arn, or $ANYTUNE_BEDROCK_ROLE_ARN), and
Bedrock is allowed to invoke it. The package holds the standard library only: a BLEU similarity (sacrebleu)
and a model judge (which would need a model to call) are refused before anything is uploaded.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any

from anytune.plugin import BackendError, Problem, as_one, grader_leaves, grader_module

HANDLER = '''

def _answer(messages: list[dict[str, Any]]) -> str:
    content = messages[-1].get("content") if messages else ""
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def lambda_handler(event: Any, context: Any) -> list[dict[str, Any]]:
    """Bedrock's reward Lambda: a batch of sampled answers in, a reward per answer out."""
    samples = event if isinstance(event, list) else (event or {}).get("samples", [])
    out = []
    for sample in samples:
        reference = sample.get("reference_answer")
        item = dict(reference) if isinstance(reference, dict) else {"reference": reference}
        parts = score_answer(_answer(sample.get("messages") or []), item)
        metrics = [{"name": k, "value": v, "type": "Reward"} for k, v in parts.items() if k != "score"]
        out.append({"id": sample.get("id"), "aggregate_reward_score": parts["score"], "metrics_list": metrics})
    return out
'''
MODULE = "lambda_function"
RUNTIME = "python3.12"
TIMEOUT_S = 300
MEMORY_MB = 512


def lambda_source(grader: Any) -> str:
    return grader_module(as_one(grader)) + HANDLER


def package(source: str) -> bytes:
    """The deployment package: one module in a zip, with fixed timestamps (the same grader, the same
    bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(f"{MODULE}.py", date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, source)
    return buffer.getvalue()


def function_name(source: str) -> str:
    return "anytune-grader-" + hashlib.sha256(source.encode()).hexdigest()[:16]


def grader_refusals(grader: Any) -> list[Problem]:
    problems = []
    for name, leaf in grader_leaves(grader):
        if leaf.type == "model_judge":
            problems.append(
                Problem(
                    "error",
                    "method.grader",
                    f"Bedrock cannot run the model_judge grader {name!r}: anytune's generated Lambda calls "
                    "no model (use a string_check, text_similarity or python grader, or azure-openai, which "
                    "has judges)",
                )
            )
        elif getattr(leaf, "metric", "") == "bleu":
            problems.append(
                Problem(
                    "error",
                    "method.grader",
                    f"the grader {name!r} uses BLEU, which needs sacrebleu; anytune's Lambda package holds the "
                    "standard library only (use rouge_1..rouge_5, rouge_l or fuzzy_match)",
                )
            )
    return problems


def deploy(client: Any, grader: Any, role_arn: str, classify: Any) -> str:
    """The ARN of the Lambda that runs this grader: the existing one of the same code, or a new one."""
    source = lambda_source(grader)
    name = function_name(source)
    try:
        return str(client.get_function(FunctionName=name)["Configuration"]["FunctionArn"])
    except Exception as exc:
        failure = classify(exc).error
        if failure.status != 404 and "ResourceNotFound" not in str(exc):
            raise failure from exc
    try:
        made = client.create_function(
            FunctionName=name,
            Runtime=RUNTIME,
            Role=role_arn,
            Handler=f"{MODULE}.lambda_handler",
            Code={"ZipFile": package(source)},
            Description="anytune grader for Bedrock reinforcement fine-tuning",
            Timeout=TIMEOUT_S,
            MemorySize=MEMORY_MB,
            Tags={"anytune": "grader"},
        )
    except Exception as exc:
        failure = classify(exc).error
        if "ResourceConflict" in str(exc):  # made by an earlier attempt
            return str(client.get_function(FunctionName=name)["Configuration"]["FunctionArn"])
        raise BackendError(
            f"the grader's Lambda could not be created: {failure.provider_message or failure.message}",
            hint="the role the job names must be one Lambda can assume, and the caller needs lambda:CreateFunction",
            status=failure.status,
        ) from exc
    arn = str(made["FunctionArn"])
    try:
        client.add_permission(
            FunctionName=name,
            StatementId="anytune-bedrock-invoke",
            Action="lambda:InvokeFunction",
            Principal="bedrock.amazonaws.com",
        )
    except Exception as exc:
        if "ResourceConflict" not in str(exc):
            raise classify(exc).error from exc
    return arn
