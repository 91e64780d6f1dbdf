"""Deterministic sample traces: realistic multi-agent runs for demos, tests and benchmarks.

Every request is run several times, each run following one scenario: a healthy run, a
retry storm (same tool, same arguments, same failure), an oscillation between two tools,
a runaway run (far more than 10 steps), or a run that ends in an error.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tracedesk.core.model import Run, Status, Step, StepKind

SCENARIOS = ("healthy", "healthy", "retry_storm", "oscillation", "runaway", "error")
START_NS = 1_793_000_000 * 1_000_000_000  # 2026-10-26, a fixed origin keeps output stable
MS = 1_000_000

# model -> (provider, typical input tokens, typical output tokens, reasons?)
MODELS = {
    "gpt-4o-2024-08-06": ("openai", 1800, 320, False),
    "gpt-4o-mini": ("openai", 1200, 200, False),
    "o3-mini": ("openai", 1500, 600, True),
    "claude-3-5-sonnet-20241022": ("anthropic", 2200, 380, False),
    "gemini-2.0-flash": ("gcp.gemini", 1600, 260, False),
}


@dataclass(frozen=True)
class Request:
    text: str
    triage: str
    specialist: str
    tools: tuple[str, ...]  # the specialist's tools; the first two are the oscillation pair
    answer: str


REQUESTS = (
    Request("Where is my order #1042? It was due on Monday.", "Triage agent", "Orders agent",
            ("lookup_order", "track_shipment", "send_email"),
            "Order #1042 left the depot today and arrives on Thursday."),
    Request("Refund the duplicate charge on invoice INV-2231.", "Triage agent", "Billing agent",
            ("get_invoice", "issue_refund", "send_email"),
            "The duplicate charge of 49.00 EUR on INV-2231 was refunded."),
    Request("Summarise the Q3 sales report and list the three weakest regions.",
            "Research agent", "Analyst agent", ("search_docs", "read_document", "run_sql"),
            "Q3 sales rose 8%; the weakest regions were Nordics, Iberia and Benelux."),
    Request("What's the weather in Oslo tomorrow, and do I need an umbrella?",
            "Assistant", "Weather agent", ("get_weather", "geocode", "web_search"),
            "Tomorrow in Oslo: 7 C with rain from noon; take an umbrella."),
    Request("Why is the nightly CI job failing since yesterday?", "Triage agent", "DevOps agent",
            ("fetch_logs", "search_code", "web_search"),
            "The nightly job fails because the cache key changed in commit 3f9e2c1."),
)  # fmt: skip

TOOL_ERRORS = {
    "track_shipment": "HTTP 503 from carrier API: service unavailable",
    "issue_refund": "PaymentGatewayTimeout: no response after 30s",
    "run_sql": 'OperationalError: relation "sales_q3" does not exist',
    "get_weather": "RateLimitError: 429 Too Many Requests",
    "fetch_logs": "PermissionError: token lacks scope logs:read",
}


@dataclass
class _RunBuilder:
    rng: random.Random
    run_id: str
    clock: int
    steps: list[Step] = field(default_factory=list)
    counter: int = 0
    # The conversation so far: each model call sees everything before it, as in a real agent.
    history: list[dict[str, Any]] = field(default_factory=list)

    def step(self, parent: Step | None, kind: StepKind, name: str, ms: int, **values: Any) -> Step:
        self.counter += 1
        step = Step(
            id=f"{self.run_id[:8]}-{self.counter:05d}",
            run_id=self.run_id,
            parent_id=parent.id if parent else None,
            kind=kind,
            name=name,
            start_ns=self.clock,
            end_ns=self.clock + ms * MS,
            status=Status.OK,
            **values,
        )
        self.steps.append(step)
        if kind not in (StepKind.AGENT,):
            self.clock += ms * MS + self.rng.randint(2, 40) * MS
        else:
            self.clock += self.rng.randint(1, 5) * MS
        return step

    def llm(self, parent: Step, model: str, reply: Any) -> Step:
        prompt = list(self.history)
        self.history.append({"role": "assistant", "content": reply})
        provider, typical_in, typical_out, reasons = MODELS[model]
        rng = self.rng
        input_tokens = int(typical_in * rng.uniform(0.6, 1.6)) + len(self.steps) * 40
        output_tokens = int(typical_out * rng.uniform(0.5, 1.5))
        cached = (input_tokens // 256) * 128 if rng.random() < 0.4 else 0
        return self.step(
            parent, StepKind.LLM, f"chat {model}", rng.randint(400, 3500),
            model=model, provider=provider, input_tokens=input_tokens, output_tokens=output_tokens,
            cached_input_tokens=cached,
            reasoning_tokens=int(output_tokens * 0.6) if reasons else 0,
            input=prompt, output=reply,
        )  # fmt: skip

    def tool(self, parent: Step, tool: str, args: dict[str, Any], result: Any = None,
             error: str | None = None) -> Step:  # fmt: skip
        step = self.step(
            parent, StepKind.TOOL, tool, self.rng.randint(50, 2500), tool_name=tool,
            tool_args=args, input=args, output=result,
        )  # fmt: skip
        if error:
            step.status, step.error, step.output = Status.ERROR, error, None
        self.history.append({"role": "tool", "name": tool, "content": error or result})
        return step

    def close(self, step: Step) -> None:
        """Make a parent span end after its last child."""
        last = max((s.end_ns or 0) for s in self.steps if s.parent_id == step.id)
        step.end_ns = max(step.end_ns or 0, last + self.rng.randint(1, 20) * MS)
        self.clock = max(self.clock, step.end_ns)


def _args(rng: random.Random, tool: str, page: int | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"query": tool.replace("_", " "), "limit": 10}
    if tool in ("lookup_order", "track_shipment"):
        args = {"order_id": "1042"}
    elif tool in ("get_invoice", "issue_refund"):
        args = {"invoice": "INV-2231", "amount": "49.00", "currency": "EUR"}
    elif tool in ("get_weather", "geocode"):
        args = {"city": "Oslo", "date": "tomorrow"}
    elif tool == "run_sql":
        args = {"sql": "SELECT region, sum(amount) FROM sales_q3 GROUP BY region"}
    if page is not None:
        args["page"] = page
    return args


def generate_run(
    rng: random.Random, request: Request, scenario: str, clock: int
) -> tuple[Run, list[Step]]:
    run_id = f"{rng.getrandbits(128):032x}"
    b = _RunBuilder(rng, run_id, clock)
    model = rng.choice(list(MODELS))
    fast_model = rng.choice(["gpt-4o-mini", "gemini-2.0-flash"])
    b.history.append({"role": "user", "content": request.text})

    root = b.step(None, StepKind.AGENT, request.triage, 0, model=None, input=request.text)
    b.step(root, StepKind.GUARDRAIL, "pii_guardrail", rng.randint(20, 120),
           output={"triggered": False})  # fmt: skip
    b.llm(root, fast_model, {"tool_calls": [{"name": f"transfer_to_{request.specialist}"}]})
    b.step(root, StepKind.HANDOFF, f"{request.triage} -> {request.specialist}", 1,
           attributes={"from_agent": request.triage, "to_agent": request.specialist})  # fmt: skip
    agent = b.step(root, StepKind.AGENT, request.specialist, 0, input=request.text)
    tools = request.tools
    final: str | None = request.answer

    if scenario == "retry_storm":
        failing = next((t for t in tools if t in TOOL_ERRORS), tools[0])
        for _ in range(rng.randint(4, 6)):
            b.llm(agent, model, {"tool_calls": [{"name": failing}]})
            b.tool(agent, failing, _args(rng, failing), error=TOOL_ERRORS.get(failing, "Timeout"))
        b.llm(agent, model, "The service keeps failing; I could not complete the request.")
        final = None
    elif scenario == "oscillation":
        first, second = tools[0], tools[1]
        for _ in range(3):
            for tool in (first, second):
                b.llm(agent, model, {"tool_calls": [{"name": tool}]})
                b.tool(agent, tool, _args(rng, tool), result={"status": "pending"})
        b.llm(agent, model, request.answer)
    elif scenario == "runaway":
        for page in range(1, rng.randint(8, 11)):
            args = _args(rng, tools[2], page)
            b.llm(agent, model, {"tool_calls": [{"name": tools[2], "arguments": args}]})
            b.tool(agent, tools[2], args, result={"items": [], "page": page})
        final = None
    else:
        for tool in tools[: rng.randint(2, 3)]:
            b.llm(agent, model, {"tool_calls": [{"name": tool}]})
            b.tool(agent, tool, _args(rng, tool), result={"ok": True, "tool": tool})
        if scenario == "error":
            b.llm(agent, model, None)
            failed = b.steps[-1]
            failed.status, failed.error = Status.ERROR, "APIError: 500 Internal Server Error"
            failed.output_tokens, final = 0, None
        else:
            b.llm(agent, model, request.answer)

    b.close(agent)
    b.close(root)
    if scenario == "error":
        agent.status = root.status = Status.ERROR
        agent.error = root.error = "Run failed: model call returned HTTP 500"
    root.output = agent.output = final
    # A reported cost on some steps, as Langfuse or LangSmith would send.
    for step in b.steps:
        if step.kind == StepKind.LLM and rng.random() < 0.25:
            step.reported_cost = Decimal(rng.randint(100, 5000)) / Decimal(1_000_000)
    run = Run(
        id=run_id, source_format="tracedesk", name=f"{request.triage} workflow",
        request=request.text, session_id=f"session-{rng.randint(1, 4)}",
        start_ns=root.start_ns, end_ns=root.end_ns,
        status=Status.ERROR if root.status == Status.ERROR else Status.OK,
        attributes={"scenario": scenario, "sample": True},
    )  # fmt: skip
    return run, b.steps


def generate(runs: int = 30, seed: int = 7) -> Iterator[tuple[Run, list[Step]]]:
    """``runs`` sample runs, the same for the same seed; requests repeat so they compare."""
    rng = random.Random(seed)
    clock = START_NS
    for index in range(runs):
        request = REQUESTS[index % len(REQUESTS)]
        scenario = SCENARIOS[(index // len(REQUESTS)) % len(SCENARIOS)]
        run, steps = generate_run(rng, request, scenario, clock)
        clock = (run.end_ns or clock) + rng.randint(30, 600) * 1_000_000_000
        yield run, steps
