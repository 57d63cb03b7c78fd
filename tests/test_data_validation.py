from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anytune.data.formats import DataFormat, detect_record
from anytune.data.validate import validate_file
from tests.conftest import write_jsonl

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        (CHAT, DataFormat.CHAT),
        ({"instruction": "Add", "input": "1 2", "output": "3"}, DataFormat.INSTRUCTION),
        ({"prompt": "2+2=", "completion": "4"}, DataFormat.COMPLETION),
        ({"text": "raw text"}, DataFormat.TEXT),
        ({"prompt": "q", "chosen": "good", "rejected": "bad"}, DataFormat.PREFERENCE),
        (
            {
                "input": {"messages": [{"role": "user", "content": "q"}]},
                "preferred_output": [{"role": "assistant", "content": "a"}],
                "non_preferred_output": [{"role": "assistant", "content": "b"}],
            },
            DataFormat.OPENAI_PREFERENCE,
        ),
        ({"something": 1}, None),
        ([1, 2], None),
    ],
)
def test_detection(record, fmt):
    assert detect_record(record) is fmt


@pytest.mark.parametrize(
    "record",
    [
        {"instruction": "Add", "input": "1 2", "output": "3"},
        {"instruction": "Add", "output": "3", "system": "be brief"},
        {"prompt": "2+2=", "completion": "4"},
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "completion": [{"role": "assistant", "content": "4"}],
        },
        {"text": "raw text"},
        {"prompt": "q", "chosen": "good", "rejected": "bad"},
        {
            "prompt": [{"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
        {
            "input": {"messages": [{"role": "user", "content": "q"}], "tools": []},
            "preferred_output": [{"role": "assistant", "content": "a"}],
            "non_preferred_output": [{"role": "assistant", "content": "b"}],
        },
    ],
)
def test_valid_records_of_every_format(tmp_path: Path, record):
    report = validate_file(write_jsonl(tmp_path / "d.jsonl", [record] * 3))
    assert report.ok, report.issues
    assert report.valid == 3 and report.errors == 0


def test_valid_variants_pass(tmp_path: Path):
    """CRLF line ends, a BOM, trailing blank lines, content parts, weights 0/1, tool calls and tool results."""
    rows = [
        CHAT,
        {
            "messages": [
                {"role": "system", "content": "terse"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": " 2+2?"}],
                },
                {"role": "assistant", "content": "5", "weight": 0},
                {"role": "user", "content": "Again"},
                {"role": "assistant", "content": [{"type": "text", "text": "4"}], "weight": 1},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
                {"role": "assistant", "content": "It is 21C."},
            ],
            "tools": [
                {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
            ],
            "parallel_tool_calls": False,
        },
    ]
    path = tmp_path / "ok.jsonl"
    body = "".join(json.dumps(r) + "\r\n" for r in rows) + "\r\n\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    report = validate_file(path)
    assert report.ok and report.valid == 3 and report.errors == 0 and report.warnings == 0, report.issues


BROKEN = [
    CHAT,  # 1 ok
    '{"messages": [{"role": "user", "content": "hi"}',  # 2 bad JSON
    {"messages": [{"role": "assitant", "content": "hi"}]},  # 3 role typo
    {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 2}]
    },  # 4
    {"messages": [{"role": "user", "content": "hi"}]},  # 5 no assistant
    {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},  # 6 no content
    {
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                ],
            },
        ]
    },  # 7 bad arguments
    {"message": [CHAT["messages"]]},  # 8 key typo
    {"messages": "hello"},  # 9 not a list
    [1, 2],  # 10 not an object
    {"prompt": "a", "completion": "b"},  # 11 other format
    {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},  # 12 content type
    CHAT,  # 13 ok
]


def test_every_broken_line_is_reported_with_line_and_field(tmp_path: Path):
    path = write_jsonl(tmp_path / "bad.jsonl", BROKEN)
    seen = []
    report = validate_file(path, on_issue=seen.append)
    errors = {(i.line, i.field) for i in seen if i.severity == "error"}
    assert errors == {
        (2, None),
        (3, "messages[0].role"),
        (4, "messages[1].weight"),
        (5, "messages"),
        (6, "messages[0].content"),
        (7, "messages[1].tool_calls[0].function.arguments"),
        (8, None),
        (9, "messages"),
        (10, None),
        (11, None),
        (12, "messages[0].content"),
    }
    assert report.valid == 2 and report.errors == 11 and not report.ok
    by_line = {i.line: i for i in seen}
    assert "did you mean 'assistant'" in by_line[3].hint
    assert "did you mean 'messages'" in by_line[8].hint
    assert "completion record" in by_line[11].message
    assert str(by_line[4]).startswith(f"{path}:4: messages[1].weight: must be 0 or 1")


def test_blank_line_inside_the_file_is_a_warning(tmp_path: Path):
    path = tmp_path / "gap.jsonl"
    path.write_text(json.dumps(CHAT) + "\n\n" + json.dumps(CHAT) + "\n")
    report = validate_file(path)
    assert report.ok and report.warnings == 1
    assert report.issues[0]["line"] == 2 and "blank" in report.issues[0]["message"]


def test_empty_file_is_an_error(tmp_path: Path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    report = validate_file(path)
    assert not report.ok and "no records" in report.issues[0]["message"]


def test_format_is_decided_by_the_majority(tmp_path: Path):
    rows = [{"prompt": "a", "completion": "b"}] + [CHAT] * 5
    report = validate_file(write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert report.format is DataFormat.CHAT
    assert [i["line"] for i in report.issues] == [1]


def test_explicit_format_overrides_detection(tmp_path: Path):
    report = validate_file(write_jsonl(tmp_path / "c.jsonl", [CHAT]), format=DataFormat.COMPLETION)
    assert report.errors == 1 and "chat record" in report.issues[0]["message"]


def test_preference_problems(tmp_path: Path):
    rows = [
        {"prompt": "q", "chosen": "same", "rejected": "same"},
        {"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
        {
            "input": {"messages": [{"role": "user", "content": "q"}]},
            "preferred_output": [
                {"role": "assistant", "content": "a"},
                {"role": "assistant", "content": "b"},
            ],
            "non_preferred_output": [{"role": "assistant", "content": "c"}],
        },
    ]
    report = validate_file(write_jsonl(tmp_path / "p.jsonl", rows[:2]))
    kinds = {(i["line"], i["field"], i["severity"]) for i in report.issues}
    assert (1, "rejected", "warning") in kinds
    assert (2, "chosen[0].role", "error") in kinds
    report = validate_file(write_jsonl(tmp_path / "o.jsonl", rows[2:]))
    assert report.issues[0]["field"] == "preferred_output" and "at most 1" in report.issues[0]["message"]


def test_csv_with_quoted_newlines_keeps_line_numbers(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text(
        'instruction,input,output\nSay hi,,hi\n"Two\nline prompt",,answer\nMissing output,,\nx,y\n'
    )
    report = validate_file(path)
    assert report.format is DataFormat.INSTRUCTION
    errors = {(i["line"], i["field"]) for i in report.issues if i["severity"] == "error"}
    assert errors == {(5, "output"), (6, None)}
    assert report.valid == 2


def test_csv_with_json_messages_column(tmp_path: Path):
    path = tmp_path / "chat.csv"
    cell = json.dumps(CHAT["messages"]).replace('"', '""')
    path.write_text(f'messages\n"{cell}"\n')
    report = validate_file(path)
    assert report.ok and report.format is DataFormat.CHAT


def test_csv_whose_header_or_json_cells_cannot_be_read_says_which(tmp_path: Path):
    """A column named twice took the last one silently (the first one's text was dropped); a JSON cell that
    does not parse was read as a string ("must be a list of messages, not a string"); and every CSV error
    was told that each line must be one JSON object."""
    twice = tmp_path / "twice.csv"
    twice.write_text("prompt,completion,prompt\nfirst,answer,second\n")
    report = validate_file(twice)
    assert report.valid == 0 and [(i["line"], i["message"], i["hint"]) for i in report.issues] == [
        (1, "the header names 'prompt' more than once", None)
    ]
    cell = json.dumps(CHAT["messages"]).replace('"', '""')
    broken = tmp_path / "broken.csv"
    broken.write_text(f'messages\n"{cell}"\n"{cell[:-1]}"\n"{cell}"\n')
    report = validate_file(broken)
    assert report.valid == 2 and report.format is DataFormat.CHAT
    (issue,) = report.issues
    assert (
        issue["line"] == 3 and issue["message"].startswith("messages: not valid JSON") and not issue["hint"]
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("prompt,completion\n")
    (issue,) = validate_file(empty).issues
    assert issue["message"] == "contains no records" and "header line" in issue["hint"]


def test_a_file_that_is_not_json_lines_is_one_error_that_says_what_it_is(tmp_path: Path):
    """A compressed file, UTF-16 text, a pretty-printed array or records, lines ended by a lone \\r: each of
    their lines was an error of its own (602 for a 200-row array, "not valid UTF-8 at byte 0" for gzip), and
    none said why."""
    import bz2
    import gzip

    rows = [json.dumps(CHAT)] * 5
    text = "\n".join(rows) + "\n"
    cases = {
        "gz.jsonl": (gzip.compress(text.encode()), "a gzip-compressed file, not text"),
        "gz.jsonl.gz": (gzip.compress(text.encode()), "a gzip-compressed file, not text"),
        "bz.jsonl": (bz2.compress(text.encode()), "a bzip2-compressed file, not text"),
        "u16.jsonl": (text.encode("utf-16"), "UTF-16LE text (it starts with a UTF-16 byte-order mark)"),
        "u16.csv": ("prompt,completion\nhi,there\n".encode("utf-16"), "UTF-16LE text"),
        # UTF-32 was called UTF-16 (its mark starts like one); without a mark neither was recognised
        "u32.jsonl": (text.encode("utf-32"), "UTF-32LE text (it starts with a UTF-32 byte-order mark)"),
        "u16le.jsonl": (text.encode("utf-16-le"), "UTF-16LE text (no byte-order mark)"),
        "u16be.jsonl": (text.encode("utf-16-be"), "UTF-16BE text (no byte-order mark)"),
        "u32be.jsonl": (text.encode("utf-32-be"), "UTF-32BE text (no byte-order mark)"),
        "u32le.csv": ("prompt,completion\nhi,there\n".encode("utf-32-le"), "`iconv -f UTF-32LE -t UTF-8"),
        "array.json": (
            json.dumps([CHAT] * 5, indent=2).encode(),
            "one JSON array written over several lines",
        ),
        "pretty.jsonl": (
            "\n".join(json.dumps(CHAT, indent=2) for _ in range(3)).encode(),
            "JSON written over several lines (pretty-printed)",
        ),
        "cr.jsonl": ("\r".join(rows).encode(), "end with a lone carriage return"),
    }
    for name, (data, says) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        report = validate_file(path)
        assert report.valid == 0 and report.errors == 1, (name, report.issues)
        assert report.issues[0]["line"] == 1 and says in report.issues[0]["message"], (name, report.issues)
    # JSON Lines that only start like those are read as JSON Lines: a first record that is broken, one
    # that is a list, one longer than the look at the first line
    long = json.dumps(
        {"messages": [{"role": "user", "content": "x" * 6000}, {"role": "assistant", "content": "y"}]}
    )
    for first, errors in (("[", 1), ("[1, 2]", 1), (long, 0), ("{", 1)):
        path = tmp_path / "lines.jsonl"
        path.write_text("\n".join([first, *rows]) + "\n")
        report = validate_file(path)
        assert (report.errors, report.valid) == (errors, 5 + (errors == 0)), (first[:10], report.issues)
    # lines of `{bad}` were called "pretty-printed": each is a broken record of its own, line by line
    path = tmp_path / "bad.jsonl"
    path.write_text("{bad}\n" * 300)
    report = validate_file(path)
    assert report.errors == 300 and "pretty-printed" not in str(report.issues)
    assert report.issues[299]["line"] == 300 and "not valid JSON" in report.issues[0]["message"]
    # a JSON array on one line: the hint says how to make JSON Lines of it
    path = tmp_path / "one-line-array.jsonl"
    path.write_text(json.dumps([CHAT] * 5) + "\n")
    (issue,) = validate_file(path).issues
    assert "array of 5 records" in issue["hint"] and "jq -c '.[]'" in issue["hint"], issue


def test_parquet_rows_are_validated(tmp_path: Path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = [CHAT, {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}, CHAT]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    report = validate_file(path)
    assert report.valid == 2
    assert [(i["line"], i["field"]) for i in report.issues] == [(2, "messages[1].role")]


def test_issue_list_is_capped_but_counts_are_not(tmp_path: Path):
    path = write_jsonl(tmp_path / "many.jsonl", ["not json"] * 50)
    seen = []
    report = validate_file(path, max_issues=10, on_issue=seen.append)
    assert report.errors == 50 and len(report.issues) == 10 and report.issues_truncated == 40
    assert len(seen) == 50  # the callback still sees every issue


def _peak_rss_kb(tmp_path: Path, path: Path) -> int:
    """Peak RSS of `anytune validate FILE`, run as a child of a fresh interpreter."""
    code = (
        "import resource, subprocess, sys\n"
        f"rc = subprocess.run([sys.executable, '-m', 'anytune', 'validate', {str(path)!r}], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
        "assert rc == 0, rc\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    return int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def test_validate_streams_in_flat_memory(tmp_path: Path):
    """200k lines (~50 MB) must not cost more memory than 2k lines, give or take a few MB of
    duplicate-detection hashes (12 bytes a row)."""

    def make(path: Path, n: int) -> Path:
        with path.open("w") as fh:
            for i in range(n):
                fh.write(
                    json.dumps(
                        {
                            "messages": [
                                {"role": "user", "content": f"Question number {i}: " + "lorem ipsum " * 15},
                                {"role": "assistant", "content": f"Answer {i}"},
                            ]
                        }
                    )
                    + "\n"
                )
        return path

    small = _peak_rss_kb(tmp_path, make(tmp_path / "small.jsonl", 2_000))
    big_file = make(tmp_path / "big.jsonl", 200_000)
    assert big_file.stat().st_size > 40_000_000
    big = _peak_rss_kb(tmp_path, big_file)
    assert big - small < 15_000, (
        f"peak RSS grew by {(big - small) / 1000:.1f} MB (small {small} kB, big {big} kB)"
    )
