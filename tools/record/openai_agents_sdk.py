"""Record real OpenAI Agents SDK trace exports, offline, as loop-detector fixtures.

Run with a Python that has ``openai-agents`` installed (recorded with 0.24.0)::

    python tools/record/openai_agents_sdk.py [OUT_DIR]

OUT_DIR defaults to ``tests/fixtures/recorded/openai-agents`` next to this script's repo.

Nothing goes over the network: the model is a scripted ``agents.models.interface.Model``
that returns pre-written Responses-API output items, the API key is fake, and the SDK's
default (backend) trace exporter is replaced by an in-memory processor.

Every scenario is run twice: ``<name>`` with the default ``RunConfig()`` and
``<name>_nocontent`` with ``RunConfig(trace_include_sensitive_data=False)``. For each run
this writes ``<name>.jsonl`` (one line per ``Span.export()`` / ``Trace.export()``, in the
order the SDK ends them) and ``<name>.counts.json`` (what the file should contain).

The scripted model opens a ``response`` span exactly the way the SDK's own
``OpenAIResponsesModel.get_response`` does (usage always; the ``Response`` object and
input only when sensitive data is included; otherwise only the response id, as for the
official OpenAI endpoint). The SDK's own test fake opens a ``generation`` span without
usage instead, which real Responses-API runs never produce.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ["OPENAI_API_KEY"] = "sk-fake"  # never used: no request leaves the process
os.environ.pop("OPENAI_AGENTS_TRACE_INCLUDE_SENSITIVE_DATA", None)  # keep RunConfig() default

import agents
from agents import (
    Agent,
    GuardrailFunctionOutput,
    ModelSettings,
    RunConfig,
    Runner,
    function_tool,
    input_guardrail,
)
from agents.handoffs import Handoff
from agents.items import ModelResponse
from agents.models.interface import Model, ModelTracing
from agents.tracing import TracingProcessor, response_span
from agents.usage import Usage, model_usage_to_span_usage
from openai.types.responses import (
    Response,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)

SDK_VERSION = getattr(agents, "__version__", "?")
MODEL_NAME = "gpt-4.1-mini-2025-04-14"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "recorded" / "openai-agents"


# --------------------------------------------------------------------------- capture


class RecordingProcessor(TracingProcessor):
    """Keeps every ``export()`` in the order the SDK ends traces and spans."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_trace_start(self, trace) -> None:
        pass

    def on_trace_end(self, trace) -> None:
        exported = trace.export()
        if exported is not None:
            self.records.append(exported)

    def on_span_start(self, span) -> None:
        pass

    def on_span_end(self, span) -> None:
        exported = span.export()
        if exported is not None:
            self.records.append(exported)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


# --------------------------------------------------------------------------- scripted model


def _short_id(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24]


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"kind": "call", "name": name, "arguments": arguments}


def text(message: str) -> dict[str, Any]:
    return {"kind": "text", "text": message}


class ScriptedResponsesModel(Model):
    """Returns one pre-written Responses-API turn per call; no network.

    ``turns`` is a list of turns; a turn is a list of ``tool_call(...)`` / ``text(...)``
    items. Call ``i`` (0-based) reports ``input_tokens=300+50*i`` and
    ``output_tokens=20+i`` (plus ``10*calls`` per extra tool call in the same turn).
    """

    def __init__(self, scenario: str, turns: list[list[dict[str, Any]]]) -> None:
        self.scenario = scenario
        self.turns = list(turns)
        self.calls = 0

    def _build(self, turn: list[dict[str, Any]], i: int) -> tuple[list[Any], Usage, str]:
        output: list[Any] = []
        for j, item in enumerate(turn):
            oid = _short_id(self.scenario, i, j)
            if item["kind"] == "call":
                output.append(
                    ResponseFunctionToolCall(
                        type="function_call",
                        id=f"fc_{oid}",
                        call_id=f"call_{oid[:20]}",
                        name=item["name"],
                        arguments=json.dumps(
                            item["arguments"], separators=(",", ":"), ensure_ascii=False
                        ),
                        status="completed",
                    )
                )
            else:
                output.append(
                    ResponseOutputMessage(
                        type="message",
                        id=f"msg_{oid}",
                        role="assistant",
                        status="completed",
                        content=[
                            ResponseOutputText(
                                type="output_text", text=item["text"], annotations=[]
                            )
                        ],
                    )
                )
        input_tokens = 300 + 50 * i
        output_tokens = 20 + i + 10 * (len(turn) - 1)
        usage = Usage(
            requests=1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )
        return output, usage, f"resp_{_short_id(self.scenario, 'resp', i)}"

    async def get_response(
        self,
        system_instructions,
        input,
        model_settings,
        tools,
        output_schema,
        handoffs,
        tracing: ModelTracing,
        *,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    ) -> ModelResponse:
        # Same span handling as agents.models.openai_responses.OpenAIResponsesModel.
        with response_span(disabled=tracing.is_disabled()) as span:
            if not self.turns:
                raise RuntimeError(f"{self.scenario}: model called more often than scripted")
            i = self.calls
            self.calls += 1
            output, usage, response_id = self._build(self.turns.pop(0), i)
            await asyncio.sleep(0.02 + 0.005 * (i % 3))  # "latency"
            response = Response(
                id=response_id,
                object="response",
                created_at=time.time(),
                model=MODEL_NAME,
                output=output,
                tool_choice="auto",
                tools=[],
                top_p=1.0,
                parallel_tool_calls=bool(model_settings.parallel_tool_calls),
                status="completed",
                usage=ResponseUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    total_tokens=usage.total_tokens,
                    input_tokens_details=usage.input_tokens_details,
                    output_tokens_details=usage.output_tokens_details,
                ),
            )
            span.span_data.usage = model_usage_to_span_usage(usage)
            if tracing.include_data():
                span.span_data.response = response
                span.span_data.input = input
            else:
                span.span_data._response_id = response.id
        return ModelResponse(output=output, usage=usage, response_id=response_id)

    def stream_response(self, *args: Any, **kwargs: Any):
        raise NotImplementedError("the recorder only uses Runner.run")


# --------------------------------------------------------------------------- tools


async def _work(seconds: float = 0.01) -> None:
    await asyncio.sleep(seconds)


WEATHER = {
    "Oslo": "4°C, light rain",
    "Bergen": "7°C, heavy rain",
    "Tromsø": "-3°C, snow",
    "Stavanger": "6°C, overcast",
}


@function_tool
async def get_weather(city: str) -> str:
    """Current weather for a city."""
    await _work(0.012)
    return f"{city}: {WEATHER.get(city, 'no data')}"


INVOICES = {
    1: [{"id": "INV-1001", "amount": 120.0}, {"id": "INV-1002", "amount": 75.5}],
    2: [{"id": "INV-1003", "amount": 980.0}, {"id": "INV-1004", "amount": 12.25}],
    3: [{"id": "INV-1005", "amount": 430.0}],
}


@function_tool
async def list_invoices(page: int) -> dict:
    """One page of invoices."""
    await _work(0.01)
    return {"page": page, "invoices": INVOICES.get(page, []), "has_more": page < 3}


@function_tool
async def fetch_url(url: str) -> str:
    """Fetch a URL and return its body."""
    await _work(0.015)
    raise ConnectionError("HTTP 503: Service Unavailable")


@function_tool
async def read_db(table: str) -> str:
    """Read rows from a database table."""
    await _work(0.008)
    raise ConnectionRefusedError("connection refused to db:5432")


@function_tool
async def send_email(to: str, subject: str) -> str:
    """Send an e-mail."""
    await _work(0.008)
    raise RuntimeError("SMTP 421 mailbox busy")


@function_tool
async def resize_image(path: str, width: int) -> str:
    """Resize an image."""
    await _work(0.008)
    raise ValueError("unsupported image format: tiff")


@function_tool
async def lookup_invoice(invoice_id: str) -> dict:
    """Look up one invoice."""
    await _work(0.01)
    return {"id": invoice_id, "amount": 249.0, "status": "paid", "paid_on": "2025-03-02"}


@function_tool
async def check_inventory(sku: str) -> dict:
    """Stock level of a SKU in the shop."""
    await _work(0.006)
    return {"status": "unknown"}


@function_tool
async def check_warehouse(sku: str) -> dict:
    """Stock level of a SKU in the warehouse."""
    await _work(0.006)
    return {"status": "unknown"}


@function_tool
async def search_docs(query: str) -> list:
    """Search the help-centre documents."""
    await _work(0.01)
    return []


@input_guardrail(name="no_card_numbers")
async def no_card_numbers(ctx, agent, user_input) -> GuardrailFunctionOutput:
    await _work(0.005)
    text_in = user_input if isinstance(user_input, str) else json.dumps(user_input)
    digits = sum(ch.isdigit() for ch in text_in)
    return GuardrailFunctionOutput(output_info={"digits": digits}, tripwire_triggered=digits >= 13)


# --------------------------------------------------------------------------- scenarios


def _agent(name: str, model: Model, tools: list, **kwargs: Any) -> Agent:
    return Agent(
        name=name,
        instructions=f"You are the {name}. Use the tools when they help.",
        model=model,
        tools=tools,
        **kwargs,
    )


def healthy_multiturn(scenario: str) -> tuple[Agent, str]:
    model = ScriptedResponsesModel(
        scenario,
        [
            [tool_call("get_weather", city="Oslo")],
            [tool_call("get_weather", city="Bergen")],
            [text("Oslo is 4°C with light rain; Bergen is 7°C with heavy rain. Take a coat.")],
        ],
    )
    return _agent("Weather agent", model, [get_weather]), "Compare the weather in Oslo and Bergen."


def paging(scenario: str) -> tuple[Agent, str]:
    model = ScriptedResponsesModel(
        scenario,
        [
            [tool_call("list_invoices", page=1)],
            [tool_call("list_invoices", page=2)],
            [tool_call("list_invoices", page=3)],
            [text("There are 5 invoices; the largest is INV-1003 at 980.00.")],
        ],
    )
    return _agent("Invoice agent", model, [list_invoices]), "Which invoice is the largest?"


def retry_storm(scenario: str) -> tuple[Agent, str]:
    url = "https://example.com/report"
    model = ScriptedResponsesModel(
        scenario,
        [[tool_call("fetch_url", url=url)] for _ in range(5)]
        + [[text("I could not fetch the report.")]],
    )
    return _agent("Report agent", model, [fetch_url]), f"Summarise the report at {url}."


def distinct_errors(scenario: str) -> tuple[Agent, str]:
    model = ScriptedResponsesModel(
        scenario,
        [
            [tool_call("read_db", table="customers")],
            [tool_call("send_email", to="ops@example.com", subject="Nightly export")],
            [tool_call("resize_image", path="/data/logo.tiff", width=256)],
            [text("The database, the mail server and the image resize all failed.")],
        ],
    )
    agent = _agent("Ops agent", model, [read_db, send_email, resize_image])
    return agent, "Run the nightly export, mail ops, and make a 256px logo."


def handoff_guardrail(scenario: str) -> tuple[Agent, str]:
    model = ScriptedResponsesModel(scenario, [])  # turns filled in below
    billing = _agent(
        "Billing agent",
        model,
        [lookup_invoice],
        handoff_description="Answers questions about invoices and payments.",
    )
    triage = Agent(
        name="Triage agent",
        instructions="Route the user to the right specialist.",
        model=model,
        handoffs=[billing],
        input_guardrails=[no_card_numbers],
    )
    model.turns = [
        [tool_call(Handoff.default_tool_name(billing))],
        [tool_call("lookup_invoice", invoice_id="INV-2042")],
        [text("Invoice INV-2042 (249.00) was paid on 2 March 2025.")],
    ]
    return triage, "Has invoice INV-2042 been paid?"


def oscillation(scenario: str) -> tuple[Agent, str]:
    turns = []
    for _ in range(3):
        turns.append([tool_call("check_inventory", sku="X1")])
        turns.append([tool_call("check_warehouse", sku="X1")])
    turns.append([text("I can't tell whether X1 is in stock; both systems say unknown.")])
    model = ScriptedResponsesModel(scenario, turns)
    agent = _agent("Stock agent", model, [check_inventory, check_warehouse])
    return agent, "Is SKU X1 in stock?"


def same_result(scenario: str) -> tuple[Agent, str]:
    model = ScriptedResponsesModel(
        scenario,
        [[tool_call("search_docs", query="refund policy")] for _ in range(4)]
        + [[text("I couldn't find a refund policy in the help centre.")]],
    )
    return _agent("Support agent", model, [search_docs]), "What is the refund policy?"


def parallel_fanout(scenario: str) -> tuple[Agent, str]:
    cities = ["Oslo", "Bergen", "Tromsø", "Stavanger"]
    model = ScriptedResponsesModel(
        scenario,
        [
            [tool_call("get_weather", city=c) for c in cities],
            [text("Coldest is Tromsø (-3°C, snow); warmest is Bergen (7°C, heavy rain).")],
        ],
    )
    agent = _agent(
        "Weather agent",
        model,
        [get_weather],
        model_settings=ModelSettings(parallel_tool_calls=True),
    )
    return agent, "Weather in Oslo, Bergen, Tromsø and Stavanger?"


SCENARIOS = {
    "healthy_multiturn": (
        healthy_multiturn,
        "The agent looks up the weather in Oslo, then in Bergen, and then answers.",
        None,
    ),
    "paging": (
        paging,
        "The agent reads invoice pages 1, 2 and 3, each with different invoices, and answers.",
        None,
    ),
    "retry_storm": (
        retry_storm,
        "The agent calls fetch_url on the same URL five times, every call fails with HTTP 503,"
        " and it then says it could not fetch the report.",
        "retry storm: 5 identical fetch_url(url='https://example.com/report') calls in a row,"
        " each failing with the same error",
    ),
    "distinct_errors": (
        distinct_errors,
        "The agent calls read_db, send_email and resize_image once each, all three fail with"
        " different errors, and it then reports the failures.",
        None,
    ),
    "handoff_guardrail": (
        handoff_guardrail,
        "An input guardrail passes, the triage agent hands off to the Billing agent, which"
        " looks up one invoice and answers.",
        None,
    ),
    "oscillation": (
        oscillation,
        "The agent alternates check_inventory and check_warehouse for SKU X1 three times each,"
        " always getting status unknown, and then gives up.",
        "oscillation: check_inventory(sku='X1') and check_warehouse(sku='X1') alternate"
        ' A,B,A,B,A,B with the same {"status": "unknown"} result',
    ),
    "same_result": (
        same_result,
        "The agent searches the docs for 'refund policy' four times, gets an empty list every"
        " time, and then says it found nothing.",
        "retry storm with the same result: 4 identical search_docs(query='refund policy')"
        " calls in a row, each returning []",
    ),
    "parallel_fanout": (
        parallel_fanout,
        "The model asks for the weather in four cities in one response, the four tool calls"
        " run in parallel, and the agent answers.",
        None,
    ),
}


# --------------------------------------------------------------------------- recording


def _counts(records: list[dict[str, Any]], sensitive: bool, story: str, loop: str | None):
    spans = [r for r in records if r.get("object") == "trace.span"]
    by_type = Counter(s["span_data"]["type"] for s in spans)
    input_tokens = output_tokens = 0
    for s in spans:
        data = s["span_data"]
        if data["type"] in ("generation", "response") and isinstance(data.get("usage"), dict):
            input_tokens += data["usage"].get("input_tokens") or 0
            output_tokens += data["usage"].get("output_tokens") or 0
    return {
        "sdk": f"openai-agents {SDK_VERSION}",
        "runs": sum(1 for r in records if r.get("object") == "trace"),
        "steps": len(spans),
        "by_type": dict(sorted(by_type.items())),
        "errors": sum(1 for s in spans if s.get("error") is not None),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "sensitive_data": sensitive,
        "story": story,
        "loop": loop,
    }


async def record(out_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    processor = RecordingProcessor()
    agents.set_trace_processors([processor])  # replaces the backend exporter
    agents.set_tracing_disabled(False)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, (build, story, loop) in SCENARIOS.items():
        for suffix, config in (
            ("", RunConfig()),
            ("_nocontent", RunConfig(trace_include_sensitive_data=False)),
        ):
            scenario = name + suffix
            processor.records.clear()
            agent, prompt = build(scenario)
            result = await Runner.run(agent, prompt, run_config=config)
            if not isinstance(result.final_output, str) or not result.final_output:
                raise SystemExit(f"{scenario}: no final answer ({result.final_output!r})")
            records = list(processor.records)
            with (out_dir / f"{scenario}.jsonl").open("w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            counts = _counts(records, config.trace_include_sensitive_data, story, loop)
            (out_dir / f"{scenario}.counts.json").write_text(
                json.dumps(counts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            results.append((scenario, counts))
    return results


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    results = asyncio.run(record(out_dir))
    types = sorted({t for _, c in results for t in c["by_type"]})
    header = ["scenario", "runs", "steps", *types, "errors", "in_tok", "out_tok", "loop"]
    rows = [
        [
            name,
            str(c["runs"]),
            str(c["steps"]),
            *(str(c["by_type"].get(t, 0)) for t in types),
            str(c["errors"]),
            str(c["input_tokens"]),
            str(c["output_tokens"]),
            "yes" if c["loop"] else "-",
        ]
        for name, c in results
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"openai-agents {SDK_VERSION} -> {out_dir}")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)))


if __name__ == "__main__":
    main()
