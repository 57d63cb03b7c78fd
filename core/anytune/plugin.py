"""Everything a backend plugin needs, in one import.

    from anytune.plugin import Backend, Capabilities, PreparedData, hookimpl, ...

The contract itself (the hooks and the types a backend exchanges with the core) lives in
`anytune.hookspecs`; this module re-exports it together with the helpers every provider needs, so that a
plugin never reaches into the core's internals and the core can reorganise them freely. Anything a plugin
imports from elsewhere in `anytune` (except `anytune.testing`, for emulators) is not part of the promise.

What is here, by the stage of a job it serves:
- contract: the hooks, `Backend`, `Capabilities`, `Limits`, `Problem`, `PreparedData`, `Quote`, `Snapshot`...
- spec and records: `JobSpec`, `Method`, `AdapterType`, `DataFormat`, `Event`, `JobStatus`, `ModelArtifact`
- data: `RecordValidator` (stream a validated file; its records may be shared with other providers'
  passes over the same file, so never change one), `convert_record`, `PreparedWriter` and
  `prepare_splits` (content-addressed provider files, split by split), message helpers (`content_text`,
  `as_messages`, `normalize_messages`...)
- billing and prices: token counters and rules, `training_memory` (what training needs per GPU),
  `token_priced` / `hour_priced` / `token_cost` / `unavailable`
  quotes from the catalog, `load_catalog` for a price lookup
- remote providers: `RetryPolicy`, `create_once`, `retry_call` (reads through a client that does not
  retry), `SdkErrors` (one error translation for an SDK),
  `http_failure`, `connection_failure`, `error_message`, `secret_from_env`
- errors: `AnytuneError` and its kinds
- places and time: `anytune_home`, `cache_dir`, `today`
"""

from __future__ import annotations

from anytune.cost.billing import (
    FAMILIES,
    HFTokenizerFiles,
    TokenCount,
    chat_rule_counts,
    chat_rule_pieces,
    chatml,
    count_chat_rule,
    count_examples,
    count_texts,
    counter_for_family,
    example_texts,
    family_of,
)
from anytune.cost.catalog import PriceCatalog, load_catalog
from anytune.cost.memory import MemoryEstimate, training_memory
from anytune.cost.quotes import (
    hour_priced,
    params_from_name,
    recurring_cost,
    token_cost,
    token_priced,
    unavailable,
)
from anytune.cost.throughput import detect_hardware, hardware_for_gpu, record_measurement
from anytune.data.convert import ConversionError, convert_record
from anytune.data.counting import BatchCounter
from anytune.data.formats import DataFormat
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
from anytune.errors import (
    AnytuneError,
    BackendError,
    CapabilityError,
    DataError,
    NotFoundError,
    UsageError,
)
from anytune.evaluation.metrics import token_f1
from anytune.hookspecs import (
    CREDENTIALS,
    Backend,
    BillableTokens,
    Capabilities,
    DataBundle,
    DatasetRef,
    EmulatorInfo,
    EmulatorOptions,
    GenerationParams,
    Limits,
    Messages,
    PreparedData,
    PreparedFile,
    Problem,
    ProviderRef,
    Quote,
    RecurringCost,
    Snapshot,
    SubmitRequest,
    hookimpl,
)
from anytune.jobs import Event, EventKind, JobStatus, ModelArtifact
from anytune.remote import (
    Failure,
    RetryPolicy,
    SdkErrors,
    connection_failure,
    create_once,
    error_message,
    http_failure,
    parse_retry_after,
    retry_call,
    upload_once,
)
from anytune.secrets import secret_from_env
from anytune.settings import anytune_home, cache_dir, today
from anytune.spec import AdapterType, JobSpec, Method

__all__ = [
    "CREDENTIALS",
    "FAMILIES",
    "AdapterType",
    "AnytuneError",
    "ApproxCounter",
    "Backend",
    "BackendError",
    "BatchCounter",
    "BillableTokens",
    "Capabilities",
    "CapabilityError",
    "ConversionError",
    "DataBundle",
    "DataError",
    "DataFormat",
    "DatasetRef",
    "EmulatorInfo",
    "EmulatorOptions",
    "Event",
    "EventKind",
    "Failure",
    "GenerationParams",
    "HFTokenizerFiles",
    "JobSpec",
    "JobStatus",
    "Limits",
    "MemoryEstimate",
    "Messages",
    "Method",
    "ModelArtifact",
    "NotFoundError",
    "PreparedData",
    "PreparedFile",
    "PreparedWriter",
    "PriceCatalog",
    "Problem",
    "ProviderRef",
    "Quote",
    "RecordValidator",
    "RecurringCost",
    "RetryPolicy",
    "SdkErrors",
    "Snapshot",
    "SubmitRequest",
    "TokenCount",
    "TokenCounter",
    "UsageError",
    "anytune_home",
    "as_messages",
    "cache_dir",
    "chat_rule_counts",
    "chat_rule_pieces",
    "chatml",
    "check_record",
    "connection_failure",
    "content_text",
    "convert_record",
    "count_chat_rule",
    "count_examples",
    "count_texts",
    "counter_for_family",
    "create_once",
    "detect_hardware",
    "error_message",
    "example_texts",
    "family_of",
    "full_text",
    "get_token_counter",
    "hardware_for_gpu",
    "hookimpl",
    "hour_priced",
    "http_failure",
    "instruction_prompt",
    "load_catalog",
    "normalize_messages",
    "params_from_name",
    "parse_retry_after",
    "prepare_splits",
    "prompt_and_target",
    "record_measurement",
    "recurring_cost",
    "retry_call",
    "secret_from_env",
    "today",
    "token_cost",
    "token_f1",
    "token_priced",
    "training_memory",
    "unavailable",
    "upload_once",
]
