"""Hostile input: mutated and truncated documents give a clear error or a clean import,
never an unexpected exception, and a failed import leaves the database as it was."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracedesk.core.importers.base import TraceFormatError
from tracedesk.core.ingest import import_file
from tracedesk.core.store import Store

from .conftest import FIXTURES, snapshot

SOURCES = {
    "otlp": FIXTURES / "formats" / "otlp_genai.jsonl",
    "openai-agents": FIXTURES / "formats" / "openai_agents.jsonl",
    "langsmith": FIXTURES / "formats" / "langsmith_runs.jsonl",
    "langfuse": FIXTURES / "formats" / "langfuse_export.json",
    "tracedesk": FIXTURES.parent.parent / "resources" / "samples" / "demo.tracedesk.jsonl",
}
# Files real producers wrote, one per dialect: mutated as JSON (or as bytes) like the above.
REAL_SOURCES = {
    "otlp": [FIXTURES / "real" / "otlp" / "monocle_test_openai_agents_sdk.console.json",
             FIXTURES / "real" / "other" / "any-agent_GOOGLE_trace.json",
             FIXTURES / "real" / "other" / "openinference-vercel_v6_all-spans.json",
             FIXTURES / "recorded" / "langfuse-otlp" / "tool_error.otlp.json",
             FIXTURES / "real" / "openinference" / "agent-prism_test_data_3.json"],
    "openai-agents": [FIXTURES / "recorded" / "openai-agents" / "handoff_guardrail.jsonl"],
    "langsmith": [FIXTURES / "real" / "langsmith" / "langsmith-sdk_langsmith_js_wrap_openai_reasoning.json",
                  FIXTURES / "recorded" / "langsmith" / "tool_error.json"],
    "langfuse": [FIXTURES / "real" / "langfuse" / "langfuse_pydantic-ai-tools-2025-12-04.trace.json"],
}  # fmt: skip
BINARY_SOURCES = {
    "otlp-protobuf": FIXTURES / "recorded" / "otel-genai" / "retry_storm.pb",
    "langsmith": FIXTURES / "recorded" / "langsmith" / "tool_error_uncompressed.multipart",
}
REAL_CASES = [(fmt, path) for fmt, paths in REAL_SOURCES.items() for path in paths]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
)  # fmt: skip


def containers(value: Any, found: list) -> list:
    """Every dict and list inside a JSON value, outermost first."""
    if isinstance(value, (dict, list)):
        found.append(value)
        for child in value.values() if isinstance(value, dict) else value:
            containers(child, found)
    return found


def load_records(path: Path) -> tuple[Any, bool]:
    """A file's records: one JSON document, or JSON Lines (the standard library keeps
    integers beyond 64 bits exact)."""
    raw = path.read_bytes()
    try:
        return json.loads(raw), False
    except json.JSONDecodeError:
        return [json.loads(line) for line in raw.splitlines() if line.strip()], True


def dump_records(records: list[Any], as_lines: bool) -> bytes:
    # The standard library writes integers beyond 64 bits, as some producers do.
    if as_lines:
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    return json.dumps(records).encode()


def check_import(data: bytes, fmt: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.json"
        path.write_bytes(data)
        with Store(Path(folder) / "db.sqlite") as store:
            # A first, valid import so that "unchanged" is checked against real rows.
            import_file(store, SOURCES["langsmith"])
            before = snapshot(store)
            try:
                import_file(store, path, format=fmt)
            except TraceFormatError as exc:
                assert str(path) in str(exc)
                assert snapshot(store) == before


@pytest.mark.parametrize("fmt", sorted(SOURCES))
@SETTINGS
@given(data=st.data())
def test_json_level_mutations(fmt, data):
    records, as_lines = load_records(SOURCES[fmt])
    mutate(records, data)
    forced = data.draw(st.sampled_from([None, fmt]))
    check_import(dump_records(records, as_lines), forced)


def mutate(records: Any, data: st.DataObject) -> None:
    """Delete keys or put odd values in one to four places of a JSON value, in place."""
    for _ in range(data.draw(st.integers(1, 4))):
        target = data.draw(st.sampled_from(containers(records, [])))
        if not target:
            continue
        if isinstance(target, dict):
            key = data.draw(st.sampled_from(sorted(target)))
            if data.draw(st.booleans()):
                del target[key]
            else:
                target[key] = data.draw(ODD_VALUES)
        else:
            index = data.draw(st.integers(0, len(target) - 1))
            target[index] = data.draw(ODD_VALUES)


@pytest.mark.parametrize("fmt", sorted(SOURCES))
@SETTINGS
@given(data=st.data())
def test_truncated_and_corrupted_bytes(fmt, data):
    raw = SOURCES[fmt].read_bytes()
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytearray(raw[:cut])
    for _ in range(data.draw(st.integers(0, 3))):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    check_import(bytes(mutated), data.draw(st.sampled_from([None, fmt])))


@pytest.mark.parametrize(("fmt", "path"), REAL_CASES, ids=[p.name for _, p in REAL_CASES])
@SETTINGS
@given(data=st.data())
def test_mutated_real_files(fmt, path, data):
    """Files real SDKs wrote, mutated: the project's own error or a clean import, always."""
    records, as_lines = load_records(path)
    mutate(records, data)
    forced = data.draw(st.sampled_from([None, fmt]))
    check_import(dump_records(records, as_lines), forced)


@pytest.mark.parametrize("fmt", sorted(BINARY_SOURCES))
@SETTINGS
@given(data=st.data())
def test_mutated_binary_files(fmt, data):
    """Protobuf and multipart bodies, truncated and with bytes changed."""
    raw = BINARY_SOURCES[fmt].read_bytes()
    mutated = bytearray(raw[: data.draw(st.integers(0, len(raw)))])
    for _ in range(data.draw(st.integers(0, 6))):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    check_import(bytes(mutated), data.draw(st.sampled_from([None, fmt])))


ODD_PAIRS = st.lists(st.one_of(
    st.fixed_dictionaries({"key": st.sampled_from(["a", "b"])},
                          optional={"value": st.one_of(ODD_VALUES, st.fixed_dictionaries(
                              {}, optional={"stringValue": ODD_VALUES, "intValue": ODD_VALUES,
                                            "arrayValue": st.just({"values": []})}))}),
    ODD_VALUES,
), max_size=4)  # fmt: skip


@given(ODD_PAIRS)
@SETTINGS
def test_otlp_attributes_from_any_pairs_as_the_careful_reading_gives_them(pairs):
    """The fast reading of well-formed pairs falls back on any odd pair: its result is
    always the pair-by-pair reading's."""
    from tracedesk.core.importers.semconv import otel_attributes, otel_value

    careful = {p["key"]: otel_value(p.get("value")) for p in pairs
               if isinstance(p, dict) and "key" in p}  # fmt: skip
    assert otel_attributes(pairs) == careful
