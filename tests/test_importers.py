"""Every supported format: real public exports, hand-made fixtures of every mapped field,
detection, and hostile input (property tests)."""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
from decimal import Decimal

import pytest

from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.importers import detect
from tracedesk.core.importers.base import TraceFormatError
from tracedesk.core.importers.otlp import normalize_id
from tracedesk.core.ingest import import_file
from tracedesk.core.model import Status, StepKind
from tracedesk.core.store import Store

from .conftest import FIXTURES, REAL_FIXTURES, snapshot

FORMAT_FIXTURES = FIXTURES / "formats"

# Counted by hand from the raw files (SOURCES.md says how each was read): format, runs, steps,
# input / output / cached-input / reasoning tokens, reported cost, steps with errors, models.
REAL = {
    "otlp/opentelemetry-proto_examples_trace.json": ("otlp", 1, 1, 0, 0, 0, 0, None, 0, []),
    "openinference/agent-prism_test_data_2.json":
        ("otlp", 1, 8, 17952, 7122, 5504, 4352, None, 0, ["o1-2024-12-17"]),
    "openinference/agent-prism_test_data_3.json":
        ("otlp", 1, 18, 629, 19, 0, 0, None, 0, ["gpt-3.5-turbo"]),
    "langfuse/agent-prism_langfuse-1.json":
        ("langfuse", 1, 11, 132451, 1372, 0, 0, "0.17928375", 0, ["gpt-5"]),
    "langfuse/langfuse_google-adk-2025-08-28.trace.json":
        ("langfuse", 1, 5, 67, 9, 0, 0, "0.0000103", 0, ["gemini-2.0-flash"]),
    # The invoke_agent observation's usage (44/180, $0.000371) sums its children: not counted.
    "langfuse/langfuse_microsoft-agent-2025-12-17.trace.json":
        ("langfuse", 1, 4, 293, 106, 0, 0, "0.00028525", 0, ["gpt-5-mini",
                                                             "gpt-5-mini-2025-08-07"]),
    "langfuse/langfuse_openai-agents-2025-09-30.trace.json":
        ("langfuse", 1, 5, 140, 44, 0, 0, "0.000632", 0, ["gpt-4.1-2025-04-14"]),
    "langfuse/langfuse_pydantic-ai-tools-2025-12-04.trace.json":
        ("langfuse", 1, 12, 1315, 209, 0, 0, "0.000322649999", 0, ["gpt-4o-mini-2024-07-18"]),
    "langsmith/langsmith-sdk_langsmith_py_wrap_openai_reasoning.json":
        ("langsmith", 1, 1, 43, 2497, 0, 1408, None, 0, ["o1-mini-2024-09-12"]),
    "langsmith/langsmith-sdk_langsmith_py_wrap_openai_stream.json":
        ("langsmith", 1, 1, 9, 9, 0, 0, None, 0, ["gpt-4o-mini-2024-07-18"]),
    # Second collection (SOURCES.md B1-B13).
    # Monocle: tokens from the `metadata` events of the 11 inference.framework spans; the 3
    # errors are LangGraph ParentCommand handoffs.
    "otlp/monocle_trace2.console.json": ("otlp", 1, 51, 5217, 506, 0, 0, None, 3, ["gpt-4o"]),
    # Every span twice (kept once) and no roots: 6 one-step runs.
    "otlp/monocle_test_bedrock_finish_reason_integratio.console.json":
        ("otlp", 6, 6, 214, 256, 0, 0, None, 1, ["ai21.jamba-1-5-mini-v1:0", "invalid.model.id"]),
    "otlp/monocle_test_openai_agents_sdk.console.json":
        ("otlp", 1, 12, 320, 92, 0, 0, None, 0, ["gpt-4o"]),
    "otlp/agent-prism_test_data_1.json":
        ("otlp", 1, 29, 0, 0, 0, 0, None, 0, ["gpt-4o", "gpt-4o-2024-08-06"]),
    "langfuse/agent-prism_langfuse-2.json":
        ("langfuse", 1, 11, 19578, 718, 0, 0, "0.031652499999", 0, ["gpt-5"]),
    "langfuse/langfuse_claude-agent-2025-12-22.trace.json":
        ("langfuse", 1, 7, 34, 232, 0, 0, "0.003582", 0, ["claude-sonnet-4-5-20250929"]),
    # usageDetails.output (59) leaves out output_reasoning (64); total (444) counts both.
    "langfuse/langfuse_langgraph-js-2025-10-30.trace.json":
        ("langfuse", 1, 20, 321, 123, 0, 64, "0.00032625", 0, ["gpt-5-mini-2025-08-07"]),
    "langfuse/langfuse_seeder_openai-assistants-2024-05-29.json":
        ("langfuse", 1, 4, 49, 40, 0, 0, "0.00387", 0, ["gpt-4"]),
    "langfuse/langfuse_vertex-ai-2025-08-01.trace.json":
        ("langfuse", 1, 1, 5, 845, 0, 0, "0.00085", 0, [
            "projects/vertex-ai-integration-467711/locations/europe-central2/publishers/google"
            "/models/gemini-2.5-flash"]),
    "langsmith/langsmith-sdk_langsmith_py_wrap_openai_stream_no_usage.json":
        ("langsmith", 1, 1, 0, 0, 0, 0, None, 0, ["gpt-4o-mini-2024-07-18"]),
    # The patch has no id (the JS SDK sends it in the URL); times are epoch milliseconds.
    "langsmith/langsmith-sdk_langsmith_js_wrap_openai_reasoning.json":
        ("langsmith", 1, 1, 43, 1901, 0, 960, None, 0, ["o1-mini-2024-09-12"]),
    "other/any-agent_GOOGLE_trace.json":
        ("otlp", 1, 7, 2251, 86, 0, 0, "0.0002509", 0, ["mistral/mistral-small-latest"]),
    # 142 in / 297 out over the chat calls (SOURCES.md) + the embedding call's 10 tokens; the
    # outer generateText/streamText spans repeat their inner call's usage and are not counted.
    "other/openinference-vercel_v6_all-spans.json":
        ("otlp", 10, 10, 152, 297, 0, 0, None, 0, ["gpt-4o-mini", "gpt-4o-mini-2024-07-18",
                                                   "text-embedding-3-small"]),
}  # fmt: skip


def test_every_real_fixture_is_covered():
    found = {str(p.relative_to(REAL_FIXTURES)) for p in REAL_FIXTURES.rglob("*.json")}
    assert found == set(REAL)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_fixture_imports(store, name):
    fmt, runs, steps, tokens_in, tokens_out, cached, reasoning, cost, errors, models = REAL[name]
    result = import_file(store, REAL_FIXTURES / name)
    assert (result.format, result.runs, result.steps) == (fmt, runs, steps)
    imported = store.runs()
    assert len(imported) == runs and all(run.name for run in imported)
    assert sum(run.step_count for run in imported) == steps
    totals = [sum(getattr(run, field) for run in imported) for field in
              ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")]  # fmt: skip
    assert totals == [tokens_in, tokens_out, cached, reasoning]
    reported = [run.reported_cost for run in imported if run.reported_cost is not None]
    assert (sum(reported) if reported else None) == (Decimal(cost) if cost else None)
    assert sum(run.error_count for run in imported) == errors
    found = {s.model for run in imported for s in store.steps(run.id) if s.model}
    assert sorted(found) == models


def steps_by_id(store: Store, run_id: str):
    return {s.id: s for s in store.steps(run_id)}


def test_otlp_genai_and_openinference_fields(store):
    result = import_file(store, FORMAT_FIXTURES / "otlp_genai.jsonl")
    assert (result.format, result.runs, result.steps, result.warning_count) == ("otlp", 1, 5, 0)
    run = store.get_run("0af7651916cd43dd8448eb211c80319c")
    assert run.request == "Where is my order #1042?" and run.session_id == "conv-1"
    assert run.attributes == {"service.name": "support-bot"}
    steps = steps_by_id(store, run.id)
    agent = steps["00f067aa0ba902b7"]
    assert agent.kind == StepKind.AGENT and agent.input_tokens is None
    assert agent.attributes["tracedesk.rollup_usage"] == {"input_tokens": 999, "output_tokens": 99}
    chat = steps["b7ad6b7169203331"]
    assert (chat.kind, chat.model, chat.provider) == ("llm", "gpt-4o-2024-08-06", "openai")
    assert (chat.input_tokens, chat.output_tokens, chat.cached_input_tokens) == (120, 30, 64)
    assert chat.reasoning_tokens == 0 and chat.depth == 1
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert chat.attributes["otel.span_kind"] == "CLIENT"
    assert "tracedesk.token_source" not in chat.attributes  # the current GenAI key
    assert chat.output[0]["parts"][0]["name"] == "get_order"
    tool = steps["c1d2e3f4a5b6c7d8"]
    assert (tool.kind, tool.tool_name, tool.tool_args) == ("tool", "get_order", {"id": "1042"})
    assert (tool.status, tool.error) == (Status.ERROR, "carrier API timed out")
    assert tool.attributes["otel.events"][0]["name"] == "exception"
    legacy = steps["d1d2e3f4a5b6c7d9"]
    assert (legacy.provider, legacy.input_tokens, legacy.output_tokens) == ("anthropic", 200, 40)
    assert legacy.input.startswith("Order 1042") and legacy.output.startswith("Sorry")
    assert legacy.attributes["tracedesk.token_source"] == "gen_ai.usage.prompt_tokens"
    oi = steps["e1d2e3f4a5b6c7da"]
    assert (oi.model, oi.provider, oi.input_tokens, oi.output_tokens) == (
        "gpt-4o-mini",
        "openai",
        50,
        10,
    )
    assert (oi.cached_input_tokens, oi.reasoning_tokens) == (32, 4)
    assert oi.reported_cost == Decimal("0.0000135")
    assert oi.input == {"messages": [{"role": "user", "content": "Where is my order #1042?"}]}
    assert oi.attributes["llm.invocation_parameters"] == {"temperature": 0}
    assert oi.attributes["llm.input_messages.0.message.role"] == "user"  # unmapped: kept


def test_openai_agents_fields(store):
    result = import_file(store, FORMAT_FIXTURES / "openai_agents.jsonl")
    assert (result.format, result.runs, result.steps) == ("openai-agents", 1, 8)
    run = store.get_run("trace_5f1c0c8e9a4b4d2c8f6a1b2c3d4e5f60")
    assert run.name == "Restaurant booking" and run.session_id.startswith("group_")
    assert run.request == "Book a table for two at 7pm"
    assert (run.input_tokens, run.output_tokens) == (710, 85)  # the turn span's usage is a roll-up
    steps = steps_by_id(store, run.id)
    gen = steps["span_000000000000000000000003"]
    assert (gen.kind, gen.model, gen.input_tokens, gen.cached_input_tokens) == (
        "llm",
        "gpt-4.1",
        310,
        256,
    )
    assert gen.reasoning_tokens == 12 and gen.attributes["usage"]["requests"] == 1
    tool = steps["span_000000000000000000000004"]
    assert (tool.tool_name, tool.tool_args) == ("find_table", {"party": 2, "time": "19:00"})
    # The specific text from error.data wins over the SDK's generic message, which is kept.
    assert (tool.status, tool.error) == (Status.ERROR, "no tables")
    assert tool.attributes["error.message"] == "Error running tool"
    assert steps["span_000000000000000000000005"].name == "Concierge -> Booking agent"
    assert steps["span_000000000000000000000002"].output == {"triggered": False}
    assert steps["span_000000000000000000000007"].depth == 2  # response under the handed-off agent
    assert (
        steps["span_000000000000000000000008"].attributes["tracedesk.rollup_usage"]["input_tokens"]
        == 710
    )


def test_langsmith_fields(store):
    result = import_file(store, FORMAT_FIXTURES / "langsmith_runs.jsonl")
    assert (result.format, result.runs, result.steps) == ("langsmith", 1, 5)
    run = store.get_run("0192e0a0-0000-7000-8000-000000000001")
    assert run.request == "Summarise the incident report"
    # The chain's total_cost rolls up its children; only the model run's own cost counts.
    assert run.reported_cost == Decimal("0.00175")
    steps = steps_by_id(store, run.id)
    openai = steps["0192e0a0-0000-7000-8000-000000000002"]
    assert (openai.model, openai.provider, openai.input_tokens, openai.output_tokens) == (
        "gpt-4o", "openai", 500, 50)  # fmt: skip
    assert openai.start_ns == 1_772_359_200_500_000_000  # naive API time read as UTC
    tool = steps["0192e0a0-0000-7000-8000-000000000003"]  # found its trace via dotted_order
    assert (tool.kind, tool.tool_name, tool.tool_args) == (
        "tool",
        "search_docs",
        {"query": "incident 42"},
    )
    assert tool.status == Status.ERROR and tool.error.startswith("ToolException")
    claude = steps["0192e0a0-0000-7000-8000-000000000005"]
    assert claude.model == "claude-3-5-sonnet-20241022"
    assert (claude.cached_input_tokens, claude.reasoning_tokens) == (512, 30)
    root = steps[run.id]
    assert root.attributes["tracedesk.rollup_usage"] == {"reported_cost": "0.00990"}


def test_langfuse_fields(store):
    result = import_file(store, FORMAT_FIXTURES / "langfuse_export.json")
    assert (result.format, result.runs, result.steps) == ("langfuse", 1, 6)
    run = store.get_run("aaaabbbbccccdddd0000111122223333")
    assert run.request == "Find three papers on agent loops"  # double-encoded trace input
    assert run.session_id == "s-7" and run.attributes["langfuse.userId"] == "u-1"
    assert run.reported_cost == Decimal("0.000195") + Decimal("0.00115") + Decimal("0.00035")
    steps = steps_by_id(store, run.id)
    root = steps["obs-root"]
    assert root.kind == StepKind.AGENT and root.input_tokens is None
    gen = steps["obs-gen-1"]
    # This producer's total (1100) counts cached and reasoning apart: folded into input/output.
    assert (gen.input_tokens, gen.output_tokens, gen.cached_input_tokens, gen.reasoning_tokens) == (
        1000, 100, 100, 20)  # fmt: skip
    assert gen.input == [{"role": "user", "content": "Find three papers on agent loops"}]
    legacy = steps["obs-gen-2"]
    assert (legacy.input_tokens, legacy.output_tokens, legacy.reported_cost) == (
        300,
        40,
        Decimal("0.00115"),
    )
    assert legacy.status == Status.OK and legacy.attributes["langfuse.level"] == "WARNING"
    assert steps["obs-gen-3"].reported_cost == Decimal("0.00035")
    tool = steps["obs-tool"]
    assert (tool.tool_name, tool.tool_args) == ("search_papers", {"query": "agent loops"})
    assert (tool.status, tool.error) == (Status.ERROR, "HTTP 429 rate limited")
    assert steps["obs-event"].kind == StepKind.EVENT and steps["obs-event"].depth == 2


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("otlp_genai.jsonl", "otlp"), ("openai_agents.jsonl", "openai-agents"),
     ("langsmith_runs.jsonl", "langsmith"), ("langfuse_export.json", "langfuse")],
)  # fmt: skip
def test_detection_by_content(tmp_path, name, fmt):
    renamed = tmp_path / "trace.dat"
    shutil.copy(FORMAT_FIXTURES / name, renamed)
    assert detect(renamed.read_bytes()[:65536]) == fmt


def test_gzip_and_format_override(store, tmp_path):
    packed = tmp_path / "spans.gz"
    packed.write_bytes(gzip.compress((FORMAT_FIXTURES / "otlp_genai.jsonl").read_bytes()))
    assert import_file(store, packed, format="otlp").steps == 5
    with pytest.raises(TraceFormatError, match="unknown format"):
        import_file(store, packed, format="nope")


def test_wrong_format_forced_fails_cleanly(store):
    before = snapshot(store)
    with pytest.raises(TraceFormatError, match="line 1"):
        import_file(store, FORMAT_FIXTURES / "otlp_genai.jsonl", format="openai-agents")
    assert snapshot(store) == before


def test_bad_otlp_record_names_line_and_field(store, tmp_path):
    lines = (FORMAT_FIXTURES / "otlp_genai.jsonl").read_bytes().splitlines()
    path = tmp_path / "bad.jsonl"
    path.write_bytes(lines[0] + b"\n" + lines[1].replace(b'"traceId"', b'"traceID"', 1) + b"\n")
    with pytest.raises(TraceFormatError, match=r"line 2 span 1 \(spanId '[0-9a-f]{16}'\): "
                       "missing required field 'traceId'"):  # fmt: skip
        import_file(store, path)
    result = import_file(store, path, skip_bad=True)
    # Only the broken span is skipped; the request's other spans are imported.
    assert (result.steps, result.bad_records) == (4, 1)


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [("5B8EFFF798038103D269B633813FC60C", 32, "5b8efff798038103d269b633813fc60c"),
     ("uoqwG/CGgzyYnOKnop7uMQ==", 32, "ba8ab01bf086833c989ce2a7a29eee31"),
     ("baWWOnbwA5k=", 16, "6da5963a76f00399"),
     ("0000000000000000", 16, None), ("", 16, None)],
)  # fmt: skip
def test_otlp_ids(value, length, expected):
    assert normalize_id(value, length) == expected


def test_reimporting_another_encoding_of_the_same_runs_adds_nothing(store, tmp_path):
    import_file(store, FORMAT_FIXTURES / "langsmith_runs.jsonl")
    before = snapshot(store).count('INSERT INTO "steps"')
    copy = tmp_path / "again.jsonl"
    copy.write_bytes((FORMAT_FIXTURES / "langsmith_runs.jsonl").read_bytes() + b"\n\n")
    result = import_file(store, copy)
    assert (result.steps, result.skipped) == (0, 5)
    assert snapshot(store).count('INSERT INTO "steps"') == before


RECORDED = FIXTURES / "recorded"
RECORDED_FILES = sorted(
    p for p in RECORDED.rglob("*")
    if p.suffix in (".json", ".jsonl", ".pb", ".multipart") and not p.name.endswith(".counts.json")
)  # fmt: skip


@pytest.mark.parametrize("path", RECORDED_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_sdk_traces_import_with_the_recorders_counts(store, path):
    """Every file a real SDK wrote imports with the counts its recorder took from it."""
    import json

    counts = path.parent / (path.name.split(".")[0] + ".counts.json")
    expected = json.loads(counts.read_text())
    result = import_file(store, path)
    assert (result.runs, result.steps) == (expected["runs"], expected["steps"])
    runs = store.runs()
    steps = [s for run in runs for s in store.steps(run.id)]
    assert sum(r.error_count for r in runs) == expected["errors"]
    for field in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_tokens",
                  "cache_write_1h_tokens"):  # fmt: skip
        if field in expected:
            assert sum(getattr(r, field) for r in runs) == expected[field], field
    if "llm_spans" in expected:
        assert sum(s.kind == StepKind.LLM for s in steps) == expected["llm_spans"]
        assert sum(s.kind == StepKind.TOOL for s in steps) == expected["tool_spans"]
    if "models" in expected:
        assert sorted({s.model for s in steps if s.model}) == expected["models"]
    if expected.get("reported_cost") is not None:
        assert sum(r.reported_cost or 0 for r in runs) == Decimal(expected["reported_cost"])


def test_binary_and_json_encodings_give_the_same_steps(tmp_path):
    """A recorder's .pb and .otlp.json of one OTLP message, and its .multipart and .json of
    one LangSmith upload, import identically."""
    pairs = [(p, p.with_name(p.name.replace(".pb", ".otlp.json"))) for p in RECORDED.rglob("*.pb")]
    pairs += [(p, p.with_suffix(".json")) for p in RECORDED.rglob("*.multipart")]
    assert len(pairs) > 20
    for pb, json_file in pairs:
        imported = []
        for path in (pb, json_file):
            with Store(tmp_path / f"{path.name}.db") as store:
                import_file(store, path)
                imported.append([store.steps(r.id) for r in store.runs("start_ns ASC")])
        assert imported[0] == imported[1], pb.name


def test_gzipped_protobuf_is_sniffed_by_content(store, tmp_path):
    source = RECORDED / "otel-genai" / "retry_storm.pb"
    packed = tmp_path / "export.bin"
    packed.write_bytes(gzip.compress(source.read_bytes()))
    assert import_file(store, packed).format == "otlp-protobuf"
    assert store.runs()[0].step_count == 12


def test_a_broken_protobuf_names_the_file_and_leaves_the_store_alone(store, tmp_path):
    broken = tmp_path / "broken.pb"
    broken.write_bytes((RECORDED / "otel-genai" / "retry_storm.pb").read_bytes()[:-40])
    with pytest.raises(TraceFormatError, match=r"broken\.pb: message: not an OTLP protobuf"):
        import_file(store, broken)
    assert store.runs() == []


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b'{"foo": 1, "bar": {"baz": 2}}', "it is JSON with keys foo, bar, baz"),
        (b'[{"event": "click", "ts": 1}]', "it is a JSON array with keys event, ts"),
        (b"hello\x1b[31m world", "it is not JSON (it starts with 'hello\\x1b[31m world')"),
    ],
)
def test_an_unknown_shape_says_what_it_looked_like(store, tmp_path, content, shown):
    path = tmp_path / "mystery.json"
    path.write_bytes(content)
    with pytest.raises(TraceFormatError) as error:
        import_file(store, path)
    message = str(error.value)
    assert f"not a trace format tracedesk reads: {shown}" in message
    assert "otlp-protobuf" in message and "langsmith" in message


def test_any_agent_ids_wider_than_64_bits_are_exact(store):
    import_file(store, REAL_FIXTURES / "other" / "any-agent_GOOGLE_trace.json")
    [run] = store.runs()
    assert run.id == f"{273475590164507581703505203264503192396:032x}"
    steps = steps_by_id(store, run.id)
    root = steps[f"{8588495004904668441:016x}"]
    assert root.kind == StepKind.AGENT and root.output == {"steps": [
        {"number": 1, "description": "Get current time in the America/New_York timezone."},
        {"number": 2, "description": "Write the year to a file."}]}  # fmt: skip
    tool = steps[f"{14962216559073945637:016x}"]
    assert (tool.tool_name, tool.tool_args) == (
        "get_current_time",
        {"timezone": "America/New_York"},
    )
    llm = steps[f"{2932848494077650092:016x}"]
    assert llm.reported_cost == Decimal("0.0000720")  # input_cost 6.72e-05 + output_cost 4.8e-06


def test_monocle_entities_events_and_duplicates(store):
    import_file(store, REAL_FIXTURES / "otlp" / "monocle_test_openai_agents_sdk.console.json")
    [run] = store.runs()
    steps = store.steps(run.id)
    [first, second] = [s for s in steps if s.kind == StepKind.LLM]
    assert (first.model, first.provider, first.input_tokens, first.output_tokens) == (
        "gpt-4o", "openai", 45, 60)  # fmt: skip
    assert (second.input_tokens, second.output_tokens) == (275, 32)
    tools = [s for s in steps if s.kind == StepKind.TOOL]
    assert {(t.name, t.tool_name) for t in tools} == {("get_weather", "get_weather")}
    assert tools[0].attributes["otel.span_name"] == "agents.tool.FunctionTool.__init__"
    result = import_file(
        store, REAL_FIXTURES / "otlp" / "monocle_test_bedrock_finish_reason_integratio.console.json"
    )
    assert result.steps == 6 and "duplicate step id" in result.warnings[0]


def test_vercel_ai_sdk_spans_from_the_javascript_sdk(store):
    import_file(store, REAL_FIXTURES / "other" / "openinference-vercel_v6_all-spans.json")
    steps = [s for run in store.runs() for s in store.steps(run.id)]
    by_name = {}
    for step in steps:
        by_name.setdefault(step.name, []).append(step)
    stream = by_name["ai.streamText.doStream"][0]
    assert (stream.kind, stream.model, stream.input_tokens, stream.output_tokens) == (
        "llm", "gpt-4o-mini-2024-07-18", 15, 112)  # fmt: skip
    assert stream.start_ns is not None and stream.end_ns > stream.start_ns
    outer = by_name["ai.streamText"][0]
    assert outer.kind == StepKind.CHAIN and outer.input_tokens is None
    assert outer.attributes["tracedesk.rollup_usage"]["output_tokens"] == 112
    assert by_name["ai.embed.doEmbed"][0].kind == StepKind.EMBEDDING


def test_langsmith_multipart_bodies(store, tmp_path):
    """The Python SDK's multipart uploads: post and patch parts, fields in their own parts."""
    result = import_file(store, RECORDED / "langsmith" / "tool_error_uncompressed.multipart")
    assert result.format == "langsmith"
    [run] = store.runs()
    steps = store.steps(run.id)
    [failed] = [s for s in steps if s.status == Status.ERROR]
    assert (failed.kind, failed.tool_name) == (StepKind.TOOL, "fetch_url")
    assert failed.error == "ServiceUnavailable('HTTP 503: Service Unavailable')"
    assert failed.attributes["error.traceback"].startswith("Traceback (most recent call last)")
    assert [s.kind for s in steps] == ["chain", "tool", "llm"]
    truncated = tmp_path / "cut.multipart"
    truncated.write_bytes((RECORDED / "langsmith" / "agent_tools.multipart").read_bytes()[:-60])
    with pytest.raises(TraceFormatError, match="multipart body is truncated"):
        import_file(store, truncated)
    assert len(store.runs()) == 1


def test_langfuse_sdk_otlp_output(store):
    """The Langfuse SDK (v3+) writes langfuse.observation.* attributes and no gen_ai.* ones."""
    import_file(store, RECORDED / "langfuse-otlp" / "tool_error.pb")
    [run] = store.runs()
    assert (run.name, run.session_id, run.request) == (
        "report-fetch", "sess-3", "Get me the latest report.")  # fmt: skip
    steps = store.steps(run.id)
    assert [s.kind for s in steps] == ["agent", "llm", "tool", "llm", "tool", "llm"]
    fetch = steps[2]
    assert (fetch.tool_name, fetch.status, fetch.error) == (
        "fetch_url", Status.ERROR, "HTTP 503: Service Unavailable")  # fmt: skip
    assert fetch.tool_args == {"url": "https://example.com/report"}
    call = steps[1]
    assert (call.model, call.input_tokens, call.output_tokens) == ("gpt-4o-2024-08-06", 300, 20)
    assert call.reported_cost is not None and call.output["tool_calls"][0]["name"] == "fetch_url"


@pytest.mark.parametrize("name", [
    "real/otlp/opentelemetry-proto_examples_trace.json",  # one request
    "real/otlp/agent-prism_test_data_1.json",  # an array of three requests, base64 ids
    "recorded/otel-genai/retry_storm.otlp.json",
    "recorded/langfuse-otlp/tool_error.otlp.json",
    "real/other/openinference-vercel_v6_all-spans.json",  # an array of JS spans
    "recorded/langsmith/tool_error.json",  # a {post, patch} object: read whole
    "real/langfuse/langfuse_openai-agents-2025-09-30.trace.json",  # {trace, observations}
    "real/langfuse/agent-prism_langfuse-2.json",
])  # fmt: skip
def test_a_huge_document_streamed_gives_the_same_steps(tmp_path, monkeypatch, name):
    """Over STREAM_BYTES a single document is parsed as a stream where its shape allows (OTLP
    span by span, top-level arrays element by element, Langfuse exports a few observations
    at a time); the steps are the same."""
    import tracedesk.core.importers.base as base_module
    import tracedesk.core.importers.langfuse as langfuse_module

    monkeypatch.setattr(langfuse_module, "STREAM_BATCH", 3)
    imported = []
    for streamed in (False, True):
        monkeypatch.setattr(base_module, "STREAM_BYTES", 0 if streamed else 1 << 40)
        with Store(tmp_path / f"{streamed}.db") as store:
            result = import_file(store, FIXTURES / name)
            imported.append((result.runs, result.steps, [
                (run, store.steps(run.id)) for run in store.runs("start_ns ASC")]))  # fmt: skip
    assert imported[0] == imported[1]
    broken = tmp_path / "broken.json"
    broken.write_bytes((FIXTURES / name).read_bytes()[:-30])
    monkeypatch.setattr(base_module, "STREAM_BYTES", 0)
    where = r"(after (span|record|observation) \d+|document)"
    with (
        Store(tmp_path / "broken.db") as store,
        pytest.raises(TraceFormatError, match=rf"broken\.json: {where}: malformed JSON"),
    ):
        import_file(store, broken, format=detect((FIXTURES / name).read_bytes()[:65536]))


def test_imports_leave_no_reference_cycles(tmp_path):
    """Imports run with the cycle collector paused (it cost a sixth of the import): so no
    format may leave cycles behind per record, or memory would grow with the file. A
    recursive closure in the loop keys once left four objects per tool call."""
    import gc

    files = sorted(REAL_FIXTURES.rglob("*.json*")) + RECORDED_FILES
    files += sorted((FIXTURES / "loops").glob("*.json*"))
    # Loading the price catalogue (once a process) builds its module objects: not per record.
    Pricing.load(use_user_file=False).resolve("gpt-4o")
    with Store(tmp_path / "cycles.db") as store:
        gc.collect()
        gc.disable()
        try:
            for path in files:
                with contextlib.suppress(TraceFormatError):  # files that are not traces
                    import_file(store, path)
                found = gc.collect()
                assert found <= 4, f"{path.name}: {found} objects in cycles"
            assert len(store.runs()) > 100
        finally:
            gc.enable()


# Anthropic usage with cache writes split by lifetime, as real producers pass it on: what
# langchain-anthropic 1.7.10's _create_usage_metadata and langfuse 5.0.4's LangChain handler
# (_parse_usage_model, its two branches) made of the same Messages API usage (42 uncached
# in, 300 read, 6,200 written of which 5,000 for 1 hour, 96 out).
LANGCHAIN_ANTHROPIC_USAGE = {
    "input_tokens": 6542, "output_tokens": 96, "total_tokens": 6638,
    "input_token_details": {"cache_read": 300, "cache_creation": 0,
                            "ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 5000},
}  # fmt: skip
LANGFUSE_USAGE_DETAILS = [
    {"input": 42, "output": 96, "total": 6638, "input_cache_read": 300, "input_cache_creation": 0,
     "input_ephemeral_5m_input_tokens": 1200, "input_ephemeral_1h_input_tokens": 5000},
    {"cache_creation_input_tokens": 6200, "cache_read_input_tokens": 300, "input": 42,
     "output": 96, "cache_creation_ephemeral_1h_input_tokens": 5000,
     "cache_creation_ephemeral_5m_input_tokens": 1200},
]  # fmt: skip


def _tokens(step) -> tuple:
    return (step.input_tokens, step.cached_input_tokens, step.cache_creation_tokens,
            step.cache_write_1h_tokens, step.output_tokens)  # fmt: skip


@pytest.mark.parametrize("details", LANGFUSE_USAGE_DETAILS, ids=["usage_metadata", "raw_usage"])
def test_langfuse_usage_details_with_one_hour_cache_writes(details):
    from tracedesk.core.importers.semconv import apply_usage_details
    from tracedesk.core.model import Step

    step = Step(id="s", run_id="r")
    apply_usage_details(step, details)
    assert _tokens(step) == (6542, 300, 6200, 5000, 96)
    unsplit = Step(id="s", run_id="r")
    apply_usage_details(unsplit, {"input": 42, "input_cache_creation": 6200, "output": 96})
    assert _tokens(unsplit) == (6242, None, 6200, None, 96)  # lifetime unknown: NULL, not 0


def test_langsmith_langchain_anthropic_usage_with_one_hour_cache_writes(store, tmp_path):
    import json

    run = {"id": "0195e6a5-0000-7000-8000-000000000001", "name": "ChatAnthropic",
           "trace_id": "0195e6a5-0000-7000-8000-000000000001", "run_type": "llm",
           "start_time": "2026-11-25T13:41:29.615964+00:00",
           "end_time": "2026-11-25T13:41:30.615964+00:00",
           "outputs": {"usage_metadata": LANGCHAIN_ANTHROPIC_USAGE},
           "extra": {"metadata": {"ls_provider": "anthropic",
                                  "ls_model_name": "claude-sonnet-4-5-20250929"}}}  # fmt: skip
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"post": [run]}))
    import_file(store, path)
    [step] = store.steps(store.runs()[0].id)
    assert _tokens(step) == (6542, 300, 6200, 5000, 96)
    assert step.cost == Decimal("0.036156")  # 42×3 + 300×0.3 + 1,200×3.75 + 5,000×6 + 96×15


def test_native_format_round_trips_one_hour_cache_writes(store, tmp_path):
    import json

    from tracedesk.core.export import write_native

    lines = [{"type": "run", "id": "r"},
             {"type": "step", "run_id": "r", "id": "s", "kind": "llm",
              "model": "claude-sonnet-4-5", "input_tokens": 6242, "output_tokens": 96,
              "cache_creation_tokens": 6200, "cache_write_1h_tokens": 5000}]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    import_file(store, path)
    assert store.get_run("r").cache_write_1h_tokens == 5000
    with (tmp_path / "out.jsonl").open("wb") as out:
        write_native(store, ["r"], out)
    [step] = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()[2:]]
    assert (step["cache_creation_tokens"], step["cache_write_1h_tokens"]) == (6200, 5000)


# Numbers where a source should give text, in every format: kept as text. Compiled, Run and
# Step refuse a value of another type at once, so each importer converts first (as_text).
_TRACE, _SPAN, _CHILD = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "b7ad6b7169203332"
NUMBERS_FOR_TEXT = {
    "otlp": {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": _TRACE, "spanId": _SPAN, "name": 12, "startTimeUnixNano": "1",
         "attributes": [{"key": "gen_ai.conversation.id", "value": {"intValue": "5"}}]},
        {"traceId": _TRACE, "spanId": _CHILD, "parentSpanId": _SPAN, "name": "x",
         "status": {"code": 2, "message": 404}, "startTimeUnixNano": "2"}]}]}]},
    "langsmith": {"id": "r1", "trace_id": "r1", "name": 12, "run_type": "llm",
                  "start_time": "2026-03-01T10:00:00", "error": 404,
                  "extra": {"metadata": {"ls_provider": 3, "ls_model_name": 4,
                                         "thread_id": 5}}},
    "langfuse": [{"trace": {"id": "t1", "name": 12, "sessionId": 5}, "observations": [
        {"id": "o1", "traceId": "t1", "type": "GENERATION", "name": 13, "model": 4,
         "level": "ERROR", "statusMessage": 404, "startTime": "2026-03-01T10:00:00Z"}]}],
    "openai-agents": [{"object": "trace", "id": "t1", "workflow_name": 12, "group_id": 5},
                      {"object": "trace.span", "id": "s1", "trace_id": "t1",
                       "started_at": "2026-03-01T10:00:00+00:00",
                       "span_data": {"type": "generation", "model": 4},
                       "error": {"message": 404}}],
    "tracedesk": [{"type": "run", "id": "r1", "name": 12, "request": 3, "session_id": 5},
                  {"type": "step", "id": "s1", "run_id": "r1", "start_ns": 1}],
}  # fmt: skip


def _as_file(fmt: str, content) -> str:
    """A record a line for the JSON Lines formats, else one document."""
    if fmt in ("openai-agents", "tracedesk"):
        return "\n".join(json.dumps(record) for record in content)
    return json.dumps(content)


@pytest.mark.parametrize("fmt", sorted(NUMBERS_FOR_TEXT))
def test_numbers_given_for_text_are_kept_as_text(store, tmp_path, fmt):
    path = tmp_path / "numbers.json"
    path.write_text(_as_file(fmt, NUMBERS_FOR_TEXT[fmt]))
    result = import_file(store, path, format=fmt)
    assert (result.bad_records, result.steps) == (0, 2 if fmt == "otlp" else 1)
    run = store.conn.execute("SELECT name, session_id FROM runs").fetchone()
    # An OTel attribute holds its type: a conversation id that is a number is none.
    assert tuple(run) == ("12", None if fmt == "otlp" else "5")
    steps = {tuple(r) for r in store.conn.execute("SELECT model, provider, error FROM steps")}
    expected = {
        "otlp": {(None, None, None), (None, None, "404")},
        "langsmith": {("4", "3", "404")},
        "langfuse": {("4", None, "404")},
        "openai-agents": {("4", None, "404")},
        "tracedesk": {(None, None, None)},
    }[fmt]
    assert steps == expected


@pytest.mark.parametrize("fmt", sorted(NUMBERS_FOR_TEXT))
def test_an_object_given_for_text_refuses_the_record_naming_the_field(store, tmp_path, fmt):
    path = tmp_path / "objects.json"
    path.write_text(_as_file(fmt, NUMBERS_FOR_TEXT[fmt]).replace('name": 12', 'name": {"a": 1}'))
    with pytest.raises(TraceFormatError, match="field 'name' must be text, not dict"):
        import_file(store, path, format=fmt)
    assert store.conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 0


@pytest.mark.parametrize(("start", "kept"), [
    (-(2**63), True), (2**63 - 1, True), (2**63, False), (True, False),
])  # fmt: skip
def test_times_must_be_64_bit_integers(store, tmp_path, start, kept):
    path = tmp_path / "times.jsonl"
    lines = [{"type": "run", "id": "r1"}, {"type": "step", "id": "s1", "run_id": "r1"},
             {"type": "step", "id": "s2", "run_id": "r1", "start_ns": start}]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines))
    result = import_file(store, path, format="tracedesk", skip_bad=True)
    assert result.steps == (2 if kept else 1)
    if not kept and start is not True:
        assert result.warnings == [f"line 3: field 'start_ns' is not a 64-bit integer: {start}"
                                   " (skipped)"]  # fmt: skip
