"""Conversion, splits, leakage, fingerprints and statistics."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from anytune.data.convert import ConversionError, convert_file, convert_record
from anytune.data.formats import DataFormat
from anytune.data.split import check_leakage, split_file
from anytune.data.stats import StatsAccumulator
from anytune.data.tokens import ApproxCounter, HFTokenizerCounter, get_token_counter
from anytune.data.validate import check_record, validate_file
from anytune.errors import DataError, UsageError
from tests.conftest import examples, reversal_rows, write_jsonl

F = DataFormat
INSTRUCTION = {"instruction": "Add the numbers", "input": "1 2", "output": "3", "system": "Be brief."}


def _valid(record, fmt):
    return [p for p in check_record(record, fmt) if p[3] == "error"] == []


@pytest.mark.parametrize(
    ("src", "record", "dst"),
    [
        (F.INSTRUCTION, INSTRUCTION, F.CHAT),
        (F.INSTRUCTION, INSTRUCTION, F.COMPLETION),
        (F.INSTRUCTION, INSTRUCTION, F.TEXT),
        (F.COMPLETION, {"prompt": "2+2=", "completion": "4"}, F.CHAT),
        (F.COMPLETION, {"prompt": "2+2=", "completion": "4"}, F.INSTRUCTION),
        (F.COMPLETION, {"prompt": "2+2=", "completion": "4"}, F.TEXT),
        (F.CHAT, reversal_rows(1)[0], F.INSTRUCTION),
        (F.CHAT, reversal_rows(1)[0], F.COMPLETION),
        (F.PREFERENCE, {"prompt": "q", "chosen": "a", "rejected": "b"}, F.OPENAI_PREFERENCE),
    ],
)
def test_conversions_produce_valid_records_that_keep_the_meaning(src, record, dst):
    from anytune.data.records import prompt_and_target

    out = convert_record(record, src, dst)
    assert _valid(out, dst), check_record(out, dst)
    if dst is not F.TEXT:
        p_in, t_in = prompt_and_target(record, src)
        p_out, t_out = prompt_and_target(out, dst)
        assert t_in == t_out
        assert [m["content"] for m in p_in] == [m["content"] for m in p_out]


def test_round_trips():
    chat = reversal_rows(1)[0]
    assert convert_record(convert_record(chat, F.CHAT, F.COMPLETION), F.COMPLETION, F.CHAT) == chat
    assert convert_record(convert_record(chat, F.CHAT, F.INSTRUCTION), F.INSTRUCTION, F.CHAT) == chat
    pref = {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    }
    back = convert_record(
        convert_record(pref, F.PREFERENCE, F.OPENAI_PREFERENCE), F.OPENAI_PREFERENCE, F.PREFERENCE
    )
    assert back == pref


@pytest.mark.parametrize(
    ("src", "record", "dst"),
    [
        (
            F.CHAT,
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                    {"role": "assistant", "content": "d"},
                ]
            },
            F.INSTRUCTION,
        ),
        (F.CHAT, reversal_rows(1)[0], F.TEXT),
        (F.TEXT, {"text": "x"}, F.CHAT),
        (F.PREFERENCE, {"prompt": "q", "chosen": "a", "rejected": "b"}, F.CHAT),
    ],
)
def test_conversions_that_would_lose_meaning_are_refused(src, record, dst):
    with pytest.raises(ConversionError):
        convert_record(record, src, dst)


def test_convert_file_is_all_or_nothing(tmp_path: Path):
    multi = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]
    }
    src = write_jsonl(tmp_path / "in.jsonl", [*reversal_rows(3), multi])
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError) as info:
        convert_file(src, out, F.INSTRUCTION)
    assert f"{src}:4:" in info.value.details[0]
    assert not out.exists() and list(tmp_path.glob(".out.jsonl*")) == []
    report = convert_file(src, out, F.COMPLETION)
    assert report.rows == 4 and validate_file(out).ok
    with pytest.raises(DataError, match="overwrite"):
        convert_file(src, src, F.COMPLETION)


def test_a_failed_conversion_leaves_a_file_already_at_the_output_as_it_was(tmp_path: Path):
    """Converting onto an existing file: the file is replaced only by a whole conversion. Before, the
    conversion was written over it and then deleted, so a bad line cost the user the file they had."""
    out = tmp_path / "out.jsonl"
    out.write_text("the user's own file\n")
    bad_line = write_jsonl(tmp_path / "bad.jsonl", [*reversal_rows(2), "broken"])
    with pytest.raises(DataError):
        convert_file(bad_line, out, F.COMPLETION)
    turns = [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]
    two_turns = {"messages": [{"role": r, "content": c} for r, c in turns]}
    unconvertible = write_jsonl(tmp_path / "multi.jsonl", [*reversal_rows(2), two_turns])
    with pytest.raises(DataError, match="cannot be converted"):
        convert_file(unconvertible, out, F.INSTRUCTION)
    assert out.read_text() == "the user's own file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "multi.jsonl", "out.jsonl"]
    assert convert_file(unconvertible, out, F.COMPLETION).rows == 3  # a whole conversion replaces it
    assert validate_file(out).ok


@pytest.mark.parametrize("name", ["train", "validation", "test"])
def test_a_split_never_replaces_the_file_being_split(tmp_path: Path, name: str):
    """Splitting `data/train.jsonl` into `data/` replaced the user's file with its training share."""
    source = write_jsonl(tmp_path / f"{name}.jsonl", reversal_rows(30))
    before = source.read_bytes()
    with pytest.raises(DataError, match=f"the {name} split would replace the file being split"):
        split_file(source, tmp_path, {"train": 0.8, "validation": 0.1, "test": 0.1})
    assert source.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [source.name]
    report = split_file(source, tmp_path / "out", {"train": 0.8, "validation": 0.1, "test": 0.1})
    assert sum(report.counts.values()) == 30


def test_convert_refuses_invalid_input_with_lines(tmp_path: Path):
    src = write_jsonl(tmp_path / "in.jsonl", [*reversal_rows(2), "broken"])
    with pytest.raises(DataError) as info:
        convert_file(src, tmp_path / "out.jsonl", F.COMPLETION)
    assert any(":3:" in d for d in info.value.details)
    assert not (tmp_path / "out.jsonl").exists()


def _lines(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def test_split_is_deterministic_sized_and_leak_free(tmp_path: Path):
    rows = reversal_rows(300, seed=1)
    rows += rows[:40]  # repeated prompts must stay on one side
    src = write_jsonl(tmp_path / "all.jsonl", rows)
    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    a = split_file(src, tmp_path / "a", ratios, seed=3)
    b = split_file(src, tmp_path / "b", ratios, seed=3)
    c = split_file(src, tmp_path / "c", ratios, seed=4)
    assert sum(a.counts.values()) == len(rows)
    for name in ratios:
        assert _lines(a.paths[name]) == _lines(b.paths[name])
        assert abs(a.counts[name] - ratios[name] * len(rows)) <= 5
    assert _lines(a.paths["test"]) != _lines(c.paths["test"])
    assert all(not leak.leaked for leak in a.leakage)
    from anytune.data.records import prompt_key

    train_keys = {prompt_key(json.loads(x), F.CHAT) for x in _lines(a.paths["train"])}
    test_keys = {prompt_key(json.loads(x), F.CHAT) for x in _lines(a.paths["test"])}
    assert not train_keys & test_keys


def test_split_refuses_bad_ratios_and_too_little_data(tmp_path: Path):
    src = write_jsonl(tmp_path / "all.jsonl", reversal_rows(3))
    with pytest.raises(UsageError):
        split_file(src, tmp_path / "o", {"train": 0.5, "test": 0.2})
    with pytest.raises(DataError, match="too few"):
        split_file(src, tmp_path / "o", {"train": 0.9, "validation": 0.05, "test": 0.05})


def test_leakage_check_finds_shared_prompts(tmp_path: Path):
    rows = reversal_rows(20, seed=2)
    train = write_jsonl(tmp_path / "train.jsonl", rows[:15])
    leaky = dict(rows[3])
    leaky["messages"] = [
        {"role": "user", "content": "  " + rows[3]["messages"][0]["content"].upper()},
        {"role": "assistant", "content": "different answer"},
    ]
    test = write_jsonl(tmp_path / "test.jsonl", [*rows[15:], leaky, rows[5]])
    report = check_leakage(train, test)
    assert report.shared_prompts == 2 and report.identical_rows == 1
    assert report.examples == [(6, 4), (7, 6)]


def test_fingerprint_ignores_bytes_but_not_content(tmp_path: Path):
    rows = reversal_rows(5)
    base = validate_file(write_jsonl(tmp_path / "a.jsonl", rows)).fingerprint
    crlf = validate_file(write_jsonl(tmp_path / "b.jsonl", rows, newline="\r\n")).fingerprint
    reordered_keys = [json.dumps(r, sort_keys=True, indent=None, separators=(" , ", " : ")) for r in rows]
    spaced = validate_file(write_jsonl(tmp_path / "c.jsonl", reordered_keys)).fingerprint
    assert base == crlf == spaced and base.startswith("sha256:")
    assert validate_file(write_jsonl(tmp_path / "d.jsonl", rows[::-1])).fingerprint != base
    edited = json.loads(json.dumps(rows))
    edited[2]["messages"][1]["content"] += "!"
    assert validate_file(write_jsonl(tmp_path / "e.jsonl", edited)).fingerprint != base


def test_stats_counts_tokens_with_a_real_tokenizer(tmp_path: Path, tiny_model: Path):
    from tokenizers import Tokenizer

    from anytune.data.records import full_text

    rows = reversal_rows(30, seed=5)
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    counter = get_token_counter(str(tiny_model))
    assert isinstance(counter, HFTokenizerCounter) and counter.exact
    report = validate_file(path, token_counter=counter, max_seq_length=20)
    tok = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    lengths = sorted(len(tok.encode(full_text(r, F.CHAT), add_special_tokens=False).ids) for r in rows)
    stats = report.stats
    assert stats.tokens_total == sum(lengths) and not stats.tokens_estimated
    assert (stats.lengths.min, stats.lengths.max) == (lengths[0], lengths[-1])
    assert stats.lengths.p50 == lengths[round(0.5 * 29)]
    assert stats.rows_over_max == sum(n > 20 for n in lengths)


def test_stats_duplicates_roles_and_labels(tmp_path: Path):
    rows = []
    for i in range(30):
        label = "positive" if i % 3 else "negative"
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Classify."},
                    {"role": "user", "content": f"review {i}"},
                    {"role": "assistant", "content": label},
                ]
            }
        )
    rows += [rows[4], rows[4], rows[7]]
    stats = validate_file(write_jsonl(tmp_path / "d.jsonl", rows)).stats
    assert stats.duplicates == 3
    assert stats.duplicate_lines == [(31, 5), (32, 5), (33, 8)]
    assert stats.roles == {"system": 33, "user": 33, "assistant": 33}
    assert stats.with_system_prompt == 33
    assert stats.labels == {"positive": 23, "negative": 10}  # 10 of i=0..29 are multiples of 3
    assert stats.label_imbalance == 2.3


def test_stats_do_not_call_free_text_labels():
    acc = StatsAccumulator(F.CHAT, ApproxCounter())
    for row in reversal_rows(40, seed=9):
        acc.add(1, row)
    assert acc.finish().labels is None


def test_token_counter_errors_are_usage_errors(tmp_path: Path):
    with pytest.raises(UsageError, match="not found"):
        get_token_counter(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"tokenizer\.json"):
        get_token_counter(str(tmp_path / "empty"))


def test_one_message_normaliser_keeps_tool_calls_in_single_and_multi_turn_chats(tmp_path):
    from anytune.spec import JobSpec
    from anytune_local.methods import rows_for

    call = [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]
    single = {
        "messages": [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": "", "tool_calls": call},
        ]
    }
    multi = {
        "messages": [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": "", "tool_calls": call},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "assistant", "content": "It is 42."},
        ]
    }
    path = write_jsonl(tmp_path / "tools.jsonl", [single, multi])
    spec = JobSpec.model_validate({"base_model": "tiny", "provider": "local", "data": {"train": str(path)}})
    one, two = rows_for(spec, str(path), DataFormat.CHAT, all_turns=True)
    assert one["completion"][0]["tool_calls"] == call
    assert two["messages"][1]["tool_calls"] == call and two["messages"][2]["tool_call_id"] == "c1"


def _train_byte_level_bpe(folder: Path) -> list[str]:
    """A GPT-2-style byte-level BPE tokenizer.json trained on the spot in `folder`; returns its texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(5)
    words = [
        "refund",
        "order",
        "naïve",
        "Zürich",
        "東京",
        "42",
        "3.14",
        "don't",
        "  ",
        "\n",
        "emoji 🙂",
        "x" * 30,
    ]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 40))) for _ in range(600)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok.save(str(folder / "tokenizer.json"))
    return texts


def test_a_byte_level_bpe_tokenizer_counts_the_same_through_tiktoken(tmp_path: Path):
    """A GPT-2-style tokenizer.json is counted by tiktoken over the same vocabulary once the first 10,000
    characters agreed with `tokenizers`; the counts are `tokenizers`' whichever path counts them."""
    pytest.importorskip("tiktoken")
    from tokenizers import Tokenizer

    from anytune.data.tokens import HFTokenizerCounter

    texts = _train_byte_level_bpe(tmp_path)
    counter = HFTokenizerCounter(tmp_path)
    chats = [f"<|im_start|>user\n{t}<|im_end|>\n" for t in texts]
    reference = [
        len(e.ids)
        for e in Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode_batch(
            chats, add_special_tokens=False
        )
    ]
    assert counter.count_many(chats[:300]) == reference[:300]
    assert counter._verified  # the rest is counted by tiktoken alone
    assert counter.count_many(chats[300:]) == reference[300:]


# what decides where GPT-2's pre-tokenizer cuts: runs of spaces and other whitespace (Unicode's, and the
# separators Python calls space and the pattern does not), letters, digits, symbols, contractions, specials
_FRAGMENTS = [
    " ",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "\xa0",
    "\u3000",
    "\x1c",
    "\x85",
    "\u2028",
    "a",
    "Zürich",
    "東京",
    "7",
    "42",
    "²",
    "Ⅷ",
    "'s",
    "'ll",
    "'S",
    ".",
    "?!",
    "_",
    "-",
    "🙂",
    "<|im_start|>",
    "<|im_end|>",
    "<|",
    "|>",
    "refund",
    " order",
    "x" * 70,
    "\x00",  # the mark count_many joins the pieces between special tokens with: a text holding it is not joined
]


def test_the_word_cached_count_equals_tokenizers_and_tiktoken_on_hostile_text(tmp_path: Path):
    """The count that takes over from `tokenizers` adds up words cut at each space followed by a character
    other than whitespace; thousands of generated texts full of the cases where such a cut would be wrong
    (a space before whitespace or at the end, whitespace runs, Unicode spaces, specials) count the same as
    `tokenizers` (the reference) and tiktoken over the same vocabulary."""
    pytest.importorskip("tiktoken")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from tokenizers import Tokenizer

    from anytune.data.tokens import _byte_level_bpe

    _train_byte_level_bpe(tmp_path)
    reference = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    words = _byte_level_bpe(tmp_path / "tokenizer.json")
    assert words is not None
    encoding = words._encode.__self__  # the tiktoken encoding it counts new words with

    @settings(
        max_examples=examples(1500), deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(st.lists(st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join), min_size=1, max_size=8))
    def check(texts: list[str]) -> None:
        expected = [len(e.ids) for e in reference.encode_batch(texts, add_special_tokens=False)]
        assert words.count_many(texts) == expected
        assert [len(encoding.encode(t, allowed_special="all")) for t in texts] == expected

    check()


_LLAMA3_FRAGMENTS = [
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|reserved_special_token_3|>",
    "<|not_a_special|>",  # looks like one: ordinary text
    "<think>",
    "</think>",
    "<|",
    "|>",
    "user",
    "\n\n",
    " ",
    "Hello",
    " world",
    "é",
    "42",
]


def test_the_llama3_count_with_special_tokens_equals_quicktoks_own_scan():
    """Rendered chats are counted piece by piece between their special tokens, one token each; texts mixing
    real special tokens, ones that only look like them and plain text count what quicktok's own special-token
    encoder counts, text by text."""
    quicktok = pytest.importorskip("quicktok")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from anytune.data.tokens import QuicktokCounter

    counter = QuicktokCounter("llama3")
    encoding = quicktok.get_encoding("llama3")

    @settings(
        max_examples=examples(400), deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(st.lists(st.lists(st.sampled_from(_LLAMA3_FRAGMENTS), max_size=20).map("".join), max_size=40))
    def check(texts: list[str]) -> None:
        assert counter.count_many(texts, special=True) == [
            len(encoding.encode_with_special(t)) for t in texts
        ]

    check()
