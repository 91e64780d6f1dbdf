"""Hostile input: mutated and truncated documents give a clear error or a clean import,
never an unexpected exception, and a failed import leaves the database as it was."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
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


def load_records(path: Path) -> tuple[list[Any], bool]:
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"["):
        return orjson.loads(raw), False
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()], True


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
    for _ in range(data.draw(st.integers(1, 4))):
        targets = containers(records, [])
        target = data.draw(st.sampled_from(targets))
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
    forced = data.draw(st.sampled_from([None, fmt]))
    check_import(dump_records(records, as_lines), forced)


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
