"""Write the labelled loop-detection traces under tests/fixtures/loops/.

    python tools/make_loop_fixtures.py

Each case is one small agent run, labelled in labels.json with the exact set of detectors
that must fire on it (every other detector must stay quiet): ``expect`` when content
(arguments, inputs, outputs) was captured and ``expect_nocontent`` when it was not, as
OpenTelemetry GenAI instrumentations do by default. Optional rule overrides and a note
saying what it shows. The legit_* cases are repetition that must not be flagged: paging,
parallel fan-out, polling with back-off, one retry, healthy multi-turn agents.

Every case is written in every variant: content captured or not, flat or with each call
wrapped in its own span (as openai-agents turn spans and LangGraph node spans do), and in
four formats: tracedesk JSON Lines, OTLP/JSON with GenAI semantic conventions, OpenAI
Agents SDK export records and a Langfuse export. One file per variant holds every case
as its own run, named after the case.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "loops"
MS = 1_000_000
T0 = 1_793_000_000 * 1_000_000_000
CONTENT_FIELDS = ("input", "output", "tool_args")


class Trace:
    def __init__(self, name: str):
        self.name = name
        self.steps: list[dict[str, Any]] = []
        self.clock = T0 + 5 * MS
        self.history: list[dict[str, Any]] = [{"role": "user", "content": f"request for {name}"}]
        self.root = {"type": "step", "run_id": name, "id": "root", "kind": "agent",
                     "name": name, "start_ns": T0, "status": "ok", "input": self.history[0]["content"]}  # fmt: skip
        self.scope = "root"  # the agent that the next calls belong to

    def _add(self, kind: str, name: str, duration_ms: int, start: int | None = None,
             parent: str | None = None, **fields: Any) -> dict[str, Any]:  # fmt: skip
        begin = self.clock if start is None else start
        step = {"type": "step", "run_id": self.name, "id": f"s{len(self.steps) + 1:02d}",
                "parent_id": parent or self.scope, "kind": kind, "name": name, "start_ns": begin,
                "end_ns": begin + duration_ms * MS, "status": "ok", **fields}  # fmt: skip
        if start is None:
            self.clock = step["end_ns"] + 5 * MS
        self.steps.append(step)
        return step

    def llm(self, output: Any, tokens: tuple[int, int] = (1000, 100), model: str = "gpt-4o",
            error: str | None = None, same_input: bool = False, nested: bool = False) -> dict[str, Any]:  # fmt: skip
        """A model call; ``nested`` adds the instrumented client's own span inside it, with
        the same input and output (LangChain and OpenAI instrumentation both on)."""
        prompt = self.history[:1] if same_input else list(self.history)
        step = self._add("llm", f"chat {model}", 800, model=model, input=prompt, output=output,
                         input_tokens=tokens[0], output_tokens=tokens[1])  # fmt: skip
        if error:
            step.update(status="error", error=error, output=None)
        else:
            self.history.append({"role": "assistant", "content": output})
        if nested:
            inner = self._add("llm", f"openai {model}", 790, start=step["start_ns"] + 5 * MS,
                              parent=step["id"], model=model, input=prompt, output=step["output"])  # fmt: skip
            step.update(input_tokens=None, output_tokens=None)  # counted once, on the client span
            inner.update(input_tokens=tokens[0], output_tokens=tokens[1])
        return step

    def tool(self, name: str, args: Any, output: Any = None, error: str | None = None,
             duration_ms: int = 200, start: int | None = None) -> dict[str, Any]:  # fmt: skip
        step = self._add("tool", name, duration_ms, start, tool_name=name, tool_args=args,
                         output=output)  # fmt: skip
        if error:
            step.update(status="error", error=error, output=None)
        self.history.append({"role": "tool", "name": name, "content": error or output})
        return step

    def agent(self, name: str) -> Callable[[], None]:
        """Start a sub-agent under the current one; call the result to end it."""
        step = self._add("agent", name, 0, input=f"task for {name}")
        outer, self.scope = self.scope, step["id"]

        def end() -> None:
            step.update(end_ns=self.clock, output=f"{name} is done")
            self.scope = outer
            self.clock += 5 * MS

        return end

    def wait(self, ms: int) -> None:
        self.clock += ms * MS

    def write(self, final: Any = "Here is the answer.", status: str = "ok") -> list[dict]:
        self.root.update(end_ns=self.clock + 5 * MS, output=final, status=status)
        if status == "error":
            self.root.setdefault("error", "run failed")
        return [self.root, *self.steps]


class Case:
    def __init__(self, steps: list[dict], expect: list[str], nocontent: list[str],
                 rules: dict[str, Any], note: str):  # fmt: skip
        self.steps, self.expect, self.nocontent, self.rules, self.note = (
            steps, expect, nocontent, rules, note)  # fmt: skip


def cases() -> dict[str, Case]:
    out: dict[str, Case] = {}

    def case(name: str, expect: list[str], note: str, rules: dict | None = None,
             nocontent: list[str] | None = None, **write: Any):  # fmt: skip
        """``nocontent``: what must be found when no content was captured (default: the
        same as with content)."""

        def register(build):
            trace = Trace(name)
            build(trace)
            out[name] = Case(trace.write(**write), expect,
                             expect if nocontent is None else nocontent, rules or {}, note)  # fmt: skip
            return build

        return register

    # -- retry storms ------------------------------------------------------------------
    @case(
        "rs_tool_fail_same_error",
        ["retry_storm", "repeated_error"],
        "the same call fails three times with the same error",
    )
    def _(t):
        t.llm("call lookup")
        for _ in range(3):
            t.tool("lookup_order", {"order_id": "1042"}, error="HTTP 503: service unavailable")
        t.llm("sorry")

    @case(
        "rs_tool_fail_varied_errors",
        ["retry_storm"],
        "the same call fails three times, each time differently",
        nocontent=[],
    )
    def _(t):
        t.llm("call lookup")
        for error in ("timeout", "connection reset by peer", "HTTP 502 bad gateway"):
            t.tool("lookup_order", {"order_id": "1042"}, error=error)
        t.llm("sorry")

    @case(
        "rs_same_result",
        ["retry_storm"],
        "four identical calls with the identical result",
        nocontent=[],
    )
    def _(t):
        t.llm("search")
        for _ in range(4):
            t.tool("search_docs", {"query": "refund policy"}, output={"hits": []})
        t.llm("nothing found")

    @case(
        "rs_llm_retry",
        ["retry_storm"],
        "a model call resent with the same input after errors",
        nocontent=[],
    )
    def _(t):
        for error in ("RateLimitError: slow down", "APIConnectionError", "Overloaded"):
            t.llm(None, same_input=True, error=error)
        t.llm("finally an answer", same_input=True)

    @case(
        "rs_with_llm_between",
        ["retry_storm", "repeated_error"],
        "tool retried with a model call before each retry; the model calls are waste",
    )
    def _(t):
        for attempt in range(3):
            t.llm(f"try the refund again (attempt {attempt + 1})")
            t.tool(
                "issue_refund",
                {"invoice": "INV-1", "amount": "49.00"},
                error="PaymentGatewayTimeout after 30s",
            )
        t.llm("the refund could not be made")

    @case(
        "rs_volatile_args",
        ["retry_storm"],
        "arguments differ only in request ids and timestamps",
        nocontent=[],
    )
    def _(t):
        t.llm("fetch")
        for i in range(3):
            t.tool("fetch_logs", {"job": "nightly", "request_id": f"req-{i}",
                                  "timestamp": f"2026-11-0{i + 1}T10:00:00Z"},
                   error=["token expired", "403", "forbidden"][i])  # fmt: skip
        t.llm("no access")

    @case(
        "rs_key_order_whitespace",
        ["retry_storm"],
        "arguments as JSON strings with other key order and white space",
        nocontent=[],
    )
    def _(t):
        t.llm("geocode")
        for args in ('{"city": "Oslo", "country": "NO"}', '{"country":"NO","city":"Oslo"}',
                     '{ "city" : "oslo",  "country": "NO" }'):  # fmt: skip
            t.tool("geocode", args, output={"lat": None})
        t.llm("unknown place")

    @case(
        "rs_ends_failed",
        ["retry_storm", "runaway"],
        "a retry storm, then the run ends in an error",
        nocontent=[],
        status="error",
        final=None,
    )
    def _(t):
        t.llm("charge")
        for error in ("card declined: code 51", "gateway timeout", "HTTP 500"):
            t.tool("charge_card", {"amount": 10}, error=error)

    # -- repeated errors -----------------------------------------------------------------
    @case(
        "re_across_tools",
        ["repeated_error"],
        "three different calls fail with the same error (numbers differ)",
    )
    def _(t):
        for tool, port, ms in (
            ("read_db", 5432, 3000),
            ("write_db", 5433, 3001),
            ("ping_db", 5434, 2999),
        ):
            t.llm(f"use {tool}")
            t.tool(
                tool, {"table": tool}, error=f"Connection refused to 10.0.0.1:{port} after {ms}ms"
            )
        t.llm("the database is down")

    @case(
        "re_propagated_counts_once",
        [],
        "an error passed up to the parent is one failure, not two: only two origins",
        status="error",
    )
    def _(t):
        t.llm("step one")
        t.tool("send_email", {"to": "a@example.com"}, error="SMTP 421 try later")
        t.llm("step two")
        t.tool("send_sms", {"to": "+4712345678"}, error="SMTP 421 try later")
        t.root["error"] = "SMTP 421 try later"
        t.llm("done anyway")

    # -- oscillation ---------------------------------------------------------------------
    @case(
        "osc_two_tools",
        ["oscillation"],
        "A → B → A → B → A → B, same arguments, same results",
        nocontent=[],
    )
    def _(t):
        t.llm("check both")
        for _ in range(3):
            t.tool("check_inventory", {"sku": "X1"}, output={"status": "unknown"})
            t.tool("check_warehouse", {"sku": "X1"}, output={"status": "unknown"})
        t.llm("could not tell")

    @case("osc_three_period", ["oscillation"], "A → B → C three times over", nocontent=[])
    def _(t):
        t.llm("loop")
        for _ in range(3):
            t.tool("plan", {"goal": "ship"}, output="draft")
            t.tool("critique", {"goal": "ship"}, output="needs work")
            t.tool("revise", {"goal": "ship"}, output="draft")

    @case(
        "osc_with_llm_between",
        ["oscillation"],
        "two tools alternating with a model call between them (9 calls: under the limit)",
        nocontent=[],
    )
    def _(t):
        for i in range(3):
            t.tool("get_status", {"id": 7}, output="pending")
            t.llm(f"try the other ({i})")
            t.tool("get_queue", {"id": 7}, output="pending")

    @case("osc_two_cycles_only", [], "A → B → A → B: two cycles are below the threshold")
    def _(t):
        t.llm("check")
        for _ in range(2):
            t.tool("check_inventory", {"sku": "X1"}, output={"status": "unknown"})
            t.tool("check_warehouse", {"sku": "X1"}, output={"status": "unknown"})
        t.llm("done")

    @case("osc_new_information", [], "alternating calls whose results keep changing: progress")
    def _(t):
        t.llm("watch")
        for i in range(3):
            t.tool("read_sensor", {"id": "a"}, output={"value": i})
            t.tool("read_sensor_b", {"id": "b"}, output={"value": 10 + i})
        t.llm("trend found")

    # -- no progress ---------------------------------------------------------------------
    @case(
        "np_llm_same_output",
        ["no_progress"],
        "three model calls with growing input give the same answer",
        nocontent=[],
    )
    def _(t):
        for _ in range(3):
            t.llm("I am not sure what to do next.")
            t.wait(10)
        t.llm("giving up")

    @case(
        "np_tool_same_result",
        ["no_progress"],
        "one tool, three different queries, the same empty result",
        nocontent=[],
    )
    def _(t):
        t.llm("search")
        for query in ("agent loops", "agent loop detection", "retry storms in agents"):
            t.tool("search_papers", {"query": query}, output={"results": []})
        t.llm("nothing")

    @case("np_two_only", [], "two identical answers are below the threshold")
    def _(t):
        t.llm("same")
        t.llm("same")
        t.llm("different")

    # -- runaway -------------------------------------------------------------------------
    @case(
        "ra_many_steps",
        ["runaway"],
        "12 distinct model and tool calls: over a 10-step limit",
        rules={"runaway__max_steps": 10},
    )
    def _(t):
        for i in range(6):
            t.llm(f"next step {i}")
            t.tool("search_docs", {"query": f"topic {i}"}, output={"hits": [i]})

    @case(
        "ra_cost",
        ["runaway"],
        "one expensive call over a $0.10 limit",
        rules={"runaway__max_cost_usd": 0.1},
    )
    def _(t):
        t.llm("a long answer", tokens=(40_000, 2_000))

    @case("ra_tokens", ["runaway"], "over a 5,000-token limit", rules={"runaway__max_tokens": 5000})
    def _(t):
        for i in range(3):
            t.llm(f"part {i}", tokens=(2000, 200))

    @case(
        "ra_duration",
        ["runaway"],
        "ran two minutes, over a 60 s limit",
        rules={"runaway__max_duration_s": 60},
    )
    def _(t):
        t.llm("start")
        t.wait(120_000)
        t.llm("end")

    @case(
        "ra_failed_after_retry",
        ["runaway"],
        "one retry (below a storm), then the run fails",
        nocontent=[],
        status="error",
        final=None,
    )
    def _(t):
        t.llm("book")
        t.tool("book_table", {"time": "19:00"}, error="no tables")
        t.tool("book_table", {"time": "19:00"}, error="still no tables")

    @case(
        "ra_no_answer_after_retry",
        ["runaway"],
        "one retry, then the run ends with an empty answer on record",
        nocontent=[],
        final="",
    )
    def _(t):
        t.llm("translate")
        t.tool("translate", {"text": "hei"}, output=None, error="quota exceeded")
        t.tool("translate", {"text": "hei"}, output={"text": None})
        t.llm("")

    @case(
        "ra_answer_not_recorded",
        [],
        "one retry, then the run ends; its answer was not recorded (unknown, not missing)",
        final=None,
    )
    def _(t):
        t.llm("translate")
        t.tool("translate", {"text": "hei"}, output=None, error="quota exceeded")
        t.tool("translate", {"text": "hei"}, output={"text": "hi"})

    # -- scopes, wrappers and generic errors ------------------------------------------------
    @case(
        "rs_in_subagent",
        ["retry_storm", "repeated_error"],
        "a sub-agent's tool fails four times in a row with the same error",
    )
    def _(t):
        t.llm("delegate to the researcher")
        end = t.agent("researcher")
        t.llm("fetch the report")
        for _ in range(4):
            t.tool(
                "fetch_url",
                {"url": "https://example.com/report"},
                error="HTTP 503: Service Unavailable",
            )
        t.llm("the report is unavailable")
        end()
        t.llm("Sorry, the report is unavailable.")

    @case(
        "legit_agents_same_lookup",
        [],
        "three agents each look up the same customer once: separate scopes, not a retry",
    )
    def _(t):
        for name in ("triage", "billing", "support"):
            end = t.agent(name)
            t.llm(f"{name} looks up the customer")
            t.tool("lookup_customer", {"id": 7}, output={"name": "Ada", "plan": "pro"})
            t.llm(f"{name} answers")
            end()

    @case(
        "legit_distinct_errors_generic",
        [],
        "three tools fail with different errors (openai-agents wraps each in a generic message)",
    )
    def _(t):
        for tool, error in (("read_db", "connection refused to db:5432"),
                            ("send_email", "SMTP 421 mailbox busy"),
                            ("resize_image", "unsupported image format: tiff")):  # fmt: skip
            t.llm(f"use {tool}")
            t.tool(tool, {"target": tool}, error=error)
        t.llm("Some steps failed; here is what worked.")

    @case(
        "legit_generic_error_only",
        [],
        "three different calls fail with only a generic error text: not the same error",
    )
    def _(t):
        for tool in ("read_db", "send_email", "resize_image"):
            t.llm(f"use {tool}")
            t.tool(tool, {"target": tool}, error="Error running tool (non-fatal)")
        t.llm("Some steps failed.")

    @case(
        "rs_generic_error_same_args",
        ["retry_storm", "runaway"],
        "the same call fails four times with only a generic error, and the run fails",
        nocontent=[],
        status="error",
        final=None,
    )
    def _(t):
        t.llm("export")
        for _ in range(4):
            t.tool("export_csv", {"table": "orders"}, error="Error running tool (non-fatal)")

    @case(
        "legit_nested_llm",
        [],
        "each model call holds the instrumented client's span with the same output",
    )
    def _(t):
        t.llm("look up the order", nested=True)
        t.tool("lookup_order", {"order_id": "7"}, output={"status": "shipped"})
        t.llm("check the delivery date", nested=True)
        t.tool("delivery_date", {"order_id": "7"}, output={"date": "2026-12-01"})
        t.llm("Your order arrives on 1 December.", nested=True)

    @case("legit_multiturn", [], "a healthy agent: chat → tool → chat → tool → chat → tool → chat")
    def _(t):
        for city in ("Oslo", "Bergen", "Tromsø"):
            t.llm(f"get the weather in {city}", tokens=(900 + len(city), 40))
            t.tool("get_weather", {"city": city}, output={"city": city, "temp": len(city)})
        t.llm("Oslo 4°, Bergen 6°, Tromsø 6°.")

    @case("legit_paging_many", [], "paging through five pages of invoices, then an answer")
    def _(t):
        t.llm("list the invoices")
        for page in range(1, 6):
            t.tool(
                "list_invoices",
                {"page": page},
                output={"invoices": [f"INV-{page}{i}" for i in range(3)]},
            )
        t.llm("15 invoices in all.")

    @case(
        "rs_llm_same_error",
        ["retry_storm", "repeated_error"],
        "a model call fails three times in a row with the same rate-limit error",
    )
    def _(t):
        for _ in range(3):
            t.llm(None, same_input=True, error="RateLimitError: 429 Too Many Requests")
        t.llm("finally an answer", same_input=True)

    # -- legitimate repetition: must not be flagged ---------------------------------------
    @case("legit_paging", [], "paging: the same tool with a changing page and new results")
    def _(t):
        t.llm("list")
        for page in range(1, 6):
            t.tool(
                "list_orders", {"page": page}, output={"orders": [page * 10 + i for i in range(3)]}
            )
        t.llm("all listed")

    @case("legit_fanout", [], "parallel fan-out of one tool over different inputs")
    def _(t):
        t.llm("fetch all")
        start = t.clock
        for city in ("Oslo", "Bergen", "Trondheim", "Tromsø"):
            t.tool(
                "get_weather",
                {"city": city},
                output={"city": city, "temp": len(city)},
                start=start + 2 * MS,
                duration_ms=300,
            )
        t.wait(320)
        t.llm("summary")

    @case("legit_fanout_same_result", [], "parallel fan-out with identical results")
    def _(t):
        t.llm("notify")
        start = t.clock
        for to in ("a@example.com", "b@example.com", "c@example.com"):
            t.tool(
                "send_email", {"to": to}, output={"status": "sent"}, start=start, duration_ms=150
            )
        t.wait(160)
        t.llm("notified")

    @case("legit_polling_backoff", [], "polling with back-off that succeeds")
    def _(t):
        t.llm("wait for the job")
        for i, status in enumerate(("pending", "pending", "pending", "done")):
            t.tool("job_status", {"job": "j-1"}, output={"status": status})
            t.wait(200 * 2**i)
        t.llm("the job is done")

    @case("legit_polling_steady", [], "polling at a steady interval that succeeds")
    def _(t):
        t.llm("wait")
        for status in ("queued", "queued", "running", "done"):
            t.tool("build_status", {"build": 42}, output={"state": status})
            t.wait(500)
        t.llm("built")

    @case("legit_retry_then_success", [], "one failure, one retry that works")
    def _(t):
        t.llm("fetch")
        t.tool("fetch_page", {"url": "https://example.com"}, error="timeout")
        t.tool("fetch_page", {"url": "https://example.com"}, output="<html>")
        t.llm("got it")

    @case("legit_ten_steps", [], "exactly ten calls: at the limit, not over it")
    def _(t):
        for i in range(5):
            t.llm(f"step {i}")
            t.tool("do_step", {"n": i}, output={"done": i})

    @case("legit_healthy", [], "a short healthy run")
    def _(t):
        t.llm("look up the order")
        t.tool("lookup_order", {"order_id": "7"}, output={"status": "shipped"})
        t.llm("Your order has shipped.")

    return out


# -- variants ----------------------------------------------------------------------------


def without_content(steps: list[dict]) -> list[dict]:
    """What an instrumentation records without content capture: no arguments, inputs or
    outputs; names, kinds, models, tokens, times, status and error texts stay."""
    return [{k: v for k, v in step.items() if k not in CONTENT_FIELDS} for step in steps]


def wrapped(steps: list[dict]) -> list[dict]:
    """Each call inside its own wrapper span under its agent (turn spans, graph nodes)."""
    agents = {s["id"] for s in steps if s["kind"] == "agent"}
    out = []
    for step in steps:
        if step["kind"] in ("llm", "tool") and step["parent_id"] in agents:
            wrapper = {"type": "step", "run_id": step["run_id"], "id": f"w{step['id']}",
                       "parent_id": step["parent_id"], "kind": "chain", "name": f"node {step['name']}",
                       "start_ns": step["start_ns"] - MS // 2, "end_ns": step["end_ns"] + MS // 2,
                       "status": step["status"]}  # fmt: skip
            if step.get("error"):
                wrapper["error"] = step["error"]  # passed up, as frameworks do
            out.append(wrapper)
            step = {**step, "parent_id": wrapper["id"]}
        out.append(step)
    return out


# -- formats ---------------------------------------------------------------------------


def hexid(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def iso(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000 // 1000:06d}+00:00"


def render_native(runs: dict[str, list[dict]]) -> bytes:
    lines: list[dict] = [{"type": "header", "format": "tracedesk", "version": 1}]
    for name, steps in runs.items():
        lines.append({"type": "run", "id": name, "name": name, "status": steps[0]["status"]})
        lines.extend(steps)
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def render_otlp(runs: dict[str, list[dict]]) -> bytes:
    """OTLP/JSON with current GenAI semantic conventions, one collector line per run."""

    def kv(key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        text = (
            value
            if isinstance(value, str) and key.endswith(("name", "model"))
            else json.dumps(value)
        )
        return {"key": key, "value": {"stringValue": text}}

    lines = []
    for name, steps in runs.items():
        spans = []
        for step in steps:
            kind = step["kind"]
            attrs = []
            if kind == "agent":
                attrs += [
                    kv("gen_ai.operation.name", "invoke_agent"),
                    kv("gen_ai.agent.name", step["name"]),
                ]
            elif kind == "llm":
                attrs += [
                    kv("gen_ai.operation.name", "chat"),
                    kv("gen_ai.request.model", step["model"]),
                ]
                for field, key in (("input_tokens", "gen_ai.usage.input_tokens"),
                                   ("output_tokens", "gen_ai.usage.output_tokens")):  # fmt: skip
                    if step.get(field) is not None:
                        attrs.append(kv(key, step[field]))
            elif kind == "tool":
                attrs += [
                    kv("gen_ai.operation.name", "execute_tool"),
                    kv("gen_ai.tool.name", step["tool_name"]),
                ]
            content = {"input": "gen_ai.input.messages", "output": "gen_ai.output.messages",
                       "tool_args": "gen_ai.tool.call.arguments"}  # fmt: skip
            if kind == "tool":
                content.update(input=None, output="gen_ai.tool.call.result")
            attrs += [kv(key, step[field]) for field, key in content.items()
                      if key and step.get(field) is not None]  # fmt: skip
            status = (
                {"code": 2, "message": step.get("error", "")}
                if step["status"] == "error"
                else {"code": 1}
            )
            parent = step.get("parent_id")
            spans.append({"traceId": hexid(name, 32), "spanId": hexid(name + step["id"], 16),
                          "parentSpanId": hexid(name + parent, 16) if parent else "",
                          "name": step["name"], "kind": 1, "attributes": attrs, "status": status,
                          "startTimeUnixNano": str(step["start_ns"]),
                          "endTimeUnixNano": str(step["end_ns"])})  # fmt: skip
        spans.reverse()  # exporters send spans as they end: children first
        lines.append({"resourceSpans": [{"resource": {"attributes": [kv("service.name", "loops")]},
                                         "scopeSpans": [{"scope": {"name": "agent"}, "spans": spans}]}]})  # fmt: skip
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def render_openai_agents(runs: dict[str, list[dict]]) -> bytes:
    """The SDK's export() records: spans as they end, then the trace; tool failures carry
    the SDK's generic message with the real text in error.data."""
    lines: list[dict] = []
    for name, steps in runs.items():
        trace_id = "trace_" + hexid(name, 32)
        for step in sorted(steps, key=lambda s: s["end_ns"]):
            kind = step["kind"]
            if kind == "agent":
                data: dict[str, Any] = {"type": "agent", "name": step["name"]}
            elif kind == "llm":
                data = {"type": "generation", "model": step["model"], "input": step.get("input"),
                        "output": step.get("output"),
                        "usage": {"input_tokens": step.get("input_tokens"), "output_tokens": step.get("output_tokens")}}  # fmt: skip
            elif kind == "tool":
                args = step.get("tool_args")
                data = {"type": "function", "name": step["tool_name"],
                        "input": None if args is None else json.dumps(args) if not isinstance(args, str) else args,
                        "output": None if step.get("output") is None else json.dumps(step["output"])}  # fmt: skip
            else:
                data = {"type": "custom", "name": step["name"], "data": {}}
            error = None
            if step["status"] == "error":
                error = ({"message": "Error running tool (non-fatal)",
                          "data": {"tool_name": step["tool_name"], "error": step["error"]}}
                         if kind == "tool" else {"message": step["error"], "data": None})  # fmt: skip
            parent = step.get("parent_id")
            lines.append({"object": "trace.span", "id": f"span_{hexid(name + step['id'], 24)}",
                          "trace_id": trace_id, "parent_id": f"span_{hexid(name + parent, 24)}" if parent else None,
                          "started_at": iso(step["start_ns"]), "ended_at": iso(step["end_ns"]),
                          "span_data": data, "error": error})  # fmt: skip
        lines.append({"object": "trace", "id": trace_id, "workflow_name": name, "group_id": None,
                      "metadata": None})  # fmt: skip
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def render_langfuse(runs: dict[str, list[dict]]) -> bytes:
    """A Langfuse export per run, as JSON Lines of {trace, observations}."""
    types = {"agent": "AGENT", "llm": "GENERATION", "tool": "TOOL", "chain": "CHAIN"}
    documents = []
    for name, steps in runs.items():
        root = steps[0]
        observations = []
        for step in steps:
            obs = {"id": f"{name}-{step['id']}", "traceId": name, "name": step["name"],
                   "parentObservationId": f"{name}-{step['parent_id']}" if step.get("parent_id") else None,
                   "type": types[step["kind"]], "startTime": iso(step["start_ns"]), "endTime": iso(step["end_ns"]),
                   "level": "ERROR" if step["status"] == "error" else "DEFAULT",
                   "statusMessage": step.get("error"), "model": step.get("model"),
                   "input": step.get("tool_args") if step["kind"] == "tool" else step.get("input"),
                   "output": step.get("output")}  # fmt: skip
            if step["kind"] == "llm" and step.get("input_tokens") is not None:
                obs["usageDetails"] = {"input": step["input_tokens"], "output": step["output_tokens"],
                                       "total": step["input_tokens"] + step["output_tokens"]}  # fmt: skip
            observations.append(obs)
        trace = {"id": name, "name": name, "timestamp": iso(root["start_ns"]),
                 "input": root.get("input"), "output": root.get("output")}  # fmt: skip
        documents.append({"trace": trace, "observations": observations})
    return b"".join(json.dumps(d).encode() + b"\n" for d in documents)


FORMATS = {
    "tracedesk": (render_native, "jsonl"),
    "otlp": (render_otlp, "otlp.jsonl"),
    "openai-agents": (render_openai_agents, "agents.jsonl"),
    "langfuse": (render_langfuse, "langfuse.jsonl"),
}
VARIANTS = {
    "content-flat": lambda steps: steps,
    "content-wrapped": wrapped,
    "nocontent-flat": without_content,
    "nocontent-wrapped": lambda steps: without_content(wrapped(steps)),
}


def variant_files() -> list[tuple[str, str, str]]:
    """(file name, format, variant) of every file this script writes."""
    return [(f"{variant}.{ext}", fmt, variant) for fmt, (_, ext) in FORMATS.items()
            for variant in VARIANTS]  # fmt: skip


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jsonl"):
        old.unlink()
    every = cases()
    for file_name, fmt, variant in variant_files():
        runs = {name: VARIANTS[variant](c.steps) for name, c in every.items()}
        (OUT / file_name).write_bytes(FORMATS[fmt][0](runs))
    labels = {name: {"expect": c.expect, "expect_nocontent": c.nocontent, "rules": c.rules,
                     "note": c.note} for name, c in every.items()}  # fmt: skip
    (OUT / "labels.json").write_text(json.dumps(labels, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(labels)} cases in {len(variant_files())} files under {OUT}")


if __name__ == "__main__":
    main()
