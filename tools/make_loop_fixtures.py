"""Write the labelled loop-detection traces under tests/fixtures/loops/.

    python tools/make_loop_fixtures.py

Each case is one small run in tracedesk JSON Lines, labelled in labels.json with the exact
set of detectors that must fire on it (every other detector must stay quiet), optional
rule overrides, and a note saying what it shows. The legit_* cases are repetition that
must not be flagged: paging, parallel fan-out, polling with back-off, one retry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "loops"
MS = 1_000_000
T0 = 1_793_000_000 * 1_000_000_000


class Trace:
    def __init__(self, name: str):
        self.name = name
        self.steps: list[dict[str, Any]] = []
        self.clock = T0 + 5 * MS
        self.history: list[dict[str, Any]] = [{"role": "user", "content": f"request for {name}"}]
        self.root = {"type": "step", "run_id": name, "id": "root", "kind": "agent",
                     "name": "Agent", "start_ns": T0, "status": "ok", "input": self.history[0]["content"]}  # fmt: skip

    def _add(self, kind: str, name: str, duration_ms: int, start: int | None = None,
             **fields: Any) -> dict[str, Any]:  # fmt: skip
        begin = self.clock if start is None else start
        step = {"type": "step", "run_id": self.name, "id": f"s{len(self.steps) + 1:02d}",
                "parent_id": "root", "kind": kind, "name": name, "start_ns": begin,
                "end_ns": begin + duration_ms * MS, "status": "ok", **fields}  # fmt: skip
        if start is None:
            self.clock = step["end_ns"] + 5 * MS
        self.steps.append(step)
        return step

    def llm(self, output: Any, tokens: tuple[int, int] = (1000, 100), model: str = "gpt-4o",
            error: str | None = None, same_input: bool = False) -> dict[str, Any]:  # fmt: skip
        prompt = self.history[:1] if same_input else list(self.history)
        step = self._add("llm", f"chat {model}", 800, model=model, input=prompt, output=output,
                         input_tokens=tokens[0], output_tokens=tokens[1])  # fmt: skip
        if error:
            step.update(status="error", error=error, output=None)
        else:
            self.history.append({"role": "assistant", "content": output})
        return step

    def tool(self, name: str, args: Any, output: Any = None, error: str | None = None,
             duration_ms: int = 200, start: int | None = None) -> dict[str, Any]:  # fmt: skip
        step = self._add("tool", name, duration_ms, start, tool_name=name, tool_args=args,
                         output=output)  # fmt: skip
        if error:
            step.update(status="error", error=error, output=None)
        self.history.append({"role": "tool", "name": name, "content": error or output})
        return step

    def wait(self, ms: int) -> None:
        self.clock += ms * MS

    def write(self, final: Any = "Here is the answer.", status: str = "ok") -> list[dict]:
        self.root.update(end_ns=self.clock + 5 * MS, output=final, status=status)
        if status == "error":
            self.root.setdefault("error", "run failed")
        run = {"type": "run", "id": self.name, "name": self.name, "status": status}
        return [
            {"type": "header", "format": "tracedesk", "version": 1},
            run,
            self.root,
            *self.steps,
        ]


def cases() -> dict[str, tuple[list[dict], list[str], dict[str, Any], str]]:
    out: dict[str, tuple[list[dict], list[str], dict[str, Any], str]] = {}

    def case(name: str, expect: list[str], note: str, rules: dict | None = None, **write: Any):
        def register(build):
            trace = Trace(name)
            build(trace)
            out[name] = (trace.write(**write), expect, rules or {}, note)
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
    )
    def _(t):
        t.llm("call lookup")
        for error in ("timeout", "connection reset by peer", "HTTP 502 bad gateway"):
            t.tool("lookup_order", {"order_id": "1042"}, error=error)
        t.llm("sorry")

    @case("rs_same_result", ["retry_storm"], "four identical calls with the identical result")
    def _(t):
        t.llm("search")
        for _ in range(4):
            t.tool("search_docs", {"query": "refund policy"}, output={"hits": []})
        t.llm("nothing found")

    @case("rs_llm_retry", ["retry_storm"], "a model call resent with the same input after errors")
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
        "rs_volatile_args", ["retry_storm"], "arguments differ only in request ids and timestamps"
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
    @case("osc_two_tools", ["oscillation"], "A → B → A → B → A → B, same arguments, same results")
    def _(t):
        t.llm("check both")
        for _ in range(3):
            t.tool("check_inventory", {"sku": "X1"}, output={"status": "unknown"})
            t.tool("check_warehouse", {"sku": "X1"}, output={"status": "unknown"})
        t.llm("could not tell")

    @case("osc_three_period", ["oscillation"], "A → B → C three times over")
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
    @case("ra_many_steps", ["runaway"], "12 distinct model and tool calls: over the 10-step limit")
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
        "one retry, then the run ends without an answer",
        final=None,
    )
    def _(t):
        t.llm("translate")
        t.tool("translate", {"text": "hei"}, output=None, error="quota exceeded")
        t.tool("translate", {"text": "hei"}, output={"text": None})

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


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jsonl"):
        old.unlink()
    labels = {}
    for name, (records, expect, rules, note) in cases().items():
        (OUT / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        labels[name] = {"expect": expect, "rules": rules, "note": note}
    (OUT / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    print(f"{len(labels)} cases written to {OUT}")


if __name__ == "__main__":
    main()
