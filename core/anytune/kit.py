"""The plugin author's kit: the helpers every provider needs, written once in the core. `anytune.plugin`
re-exports them beside the contract (`anytune.hookspecs`); a plugin imports both from there.

- data: `RecordValidator` (stream a validated file; its records may be shared with other providers' passes
  over the same file, so never change one), `check_record`, `convert_record`, `PreparedWriter` and
  `prepare_splits` (content-addressed provider files, split by split), message helpers (`content_text`,
  `as_messages`, `normalize_messages`, `full_text`, `instruction_prompt`, `prompt_and_target`)
- tokens: `counter_for_family`, `family_of`, `count_examples`, `count_texts`, `chat_rule_pieces`,
  `BatchCounter` (batched counts on a background thread), `TokenCount`, `TokenCounter`, `ApproxCounter`,
  `get_token_counter`, `HFTokenizerFiles`
- prices and hardware: `token_priced` / `hour_priced` / `token_cost` / `recurring_cost` / `unavailable`
  (quotes from the catalog, with sources), `load_catalog` / `PriceCatalog`, `params_from_name`,
  `training_memory` (what training needs per GPU), `detect_hardware`, `hardware_for_gpu`,
  `record_measurement`, `token_f1`
- remote providers: `RetryPolicy`, `create_once` (a paid create, never twice), `retry_call` (reads through a
  client that does not retry), `upload_once`, `SdkErrors` (one error translation for an SDK), `Failure`,
  `http_failure`, `connection_failure`, `error_message`, `secret_from_env`
- graders (RFT): `Grader` (scores an answer against a data item, as `anytune grade` does), `GraderFailed`,
  `GraderSpec`, `MultiGrader`, `ModelJudgeGrader`, `PythonGrader`, `StringCheckGrader`, `grader_item`,
  `grader_leaves`, `linear_weights`, `as_one` (several top-level graders as one), `grader_module` (the
  grader as standard-library Python a provider runs), `rft_example` (a data line as an RFT prompt and the
  item its grader reads)
- RFT quotes: `hourly_rft_quote` (per training hour, the model-judge calls shown apart), `token_rft_quote`
  (per token of the sampled work)
- places and time: `anytune_home`, `cache_dir`, `today`; `JobDir` (the folder a backend and the worker
  process it starts share: request, status, events, result)
"""

from __future__ import annotations

from anytune.cost.billing import (
    HFTokenizerFiles,
    TokenCount,
    chat_rule_pieces,
    count_examples,
    count_texts,
    counter_for_family,
    family_of,
)
from anytune.cost.catalog import PriceCatalog, load_catalog
from anytune.cost.memory import training_memory
from anytune.cost.quotes import (
    hour_priced,
    params_from_name,
    recurring_cost,
    token_cost,
    token_priced,
    unavailable,
)
from anytune.cost.rft import hourly_rft_quote, token_rft_quote
from anytune.cost.throughput import detect_hardware, hardware_for_gpu, record_measurement
from anytune.data.convert import ConversionError, convert_record
from anytune.data.counting import BatchCounter
from anytune.data.prepared import PreparedWriter, prepare_splits
from anytune.data.records import (
    as_messages,
    content_text,
    full_text,
    instruction_prompt,
    normalize_messages,
    prompt_and_target,
)
from anytune.data.tokens import ApproxCounter, TokenCounter, get_token_counter
from anytune.data.validate import RecordValidator, check_record
from anytune.evaluation.metrics import token_f1
from anytune.graders import (
    Grader,
    GraderFailed,
    GraderSpec,
    ModelJudgeGrader,
    MultiGrader,
    PythonGrader,
    StringCheckGrader,
    grader_leaves,
)
from anytune.graders.datacheck import grader_item
from anytune.graders.formula import linear_weights
from anytune.graders.portable import grader_module, rft_example
from anytune.graders.spec import as_one
from anytune.jobdir import JobDir
from anytune.remote import (
    Failure,
    RetryPolicy,
    SdkErrors,
    connection_failure,
    create_once,
    error_message,
    http_failure,
    retry_call,
    upload_once,
)
from anytune.secrets import secret_from_env
from anytune.settings import anytune_home, cache_dir, today

__all__ = [
    "ApproxCounter",
    "BatchCounter",
    "ConversionError",
    "Failure",
    "Grader",
    "GraderFailed",
    "GraderSpec",
    "HFTokenizerFiles",
    "JobDir",
    "ModelJudgeGrader",
    "MultiGrader",
    "PreparedWriter",
    "PriceCatalog",
    "PythonGrader",
    "RecordValidator",
    "RetryPolicy",
    "SdkErrors",
    "StringCheckGrader",
    "TokenCount",
    "TokenCounter",
    "anytune_home",
    "as_messages",
    "as_one",
    "cache_dir",
    "chat_rule_pieces",
    "check_record",
    "connection_failure",
    "content_text",
    "convert_record",
    "count_examples",
    "count_texts",
    "counter_for_family",
    "create_once",
    "detect_hardware",
    "error_message",
    "family_of",
    "full_text",
    "get_token_counter",
    "grader_item",
    "grader_leaves",
    "grader_module",
    "hardware_for_gpu",
    "hour_priced",
    "hourly_rft_quote",
    "http_failure",
    "instruction_prompt",
    "linear_weights",
    "load_catalog",
    "normalize_messages",
    "params_from_name",
    "prepare_splits",
    "prompt_and_target",
    "record_measurement",
    "recurring_cost",
    "retry_call",
    "rft_example",
    "secret_from_env",
    "today",
    "token_cost",
    "token_f1",
    "token_priced",
    "token_rft_quote",
    "training_memory",
    "unavailable",
    "upload_once",
]
