"""Prices from the genai-prices catalogue: usage types, tiers, dates, provider conventions,
and a check of every real fixture's reported cost against our own pricing of its tokens."""

from __future__ import annotations

import csv
import datetime
import io
import re
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from genai_prices import Usage, calc_price, extract_usage

from tracedesk.cli import main
from tracedesk.core.analysis.cost import CostSource, explain_cost
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.export import COST_WRITERS
from tracedesk.core.ingest import import_file
from tracedesk.core.model import Step, StepKind
from tracedesk.core.store import Store
from tracedesk.core.summary import summarize

from .conftest import FIXTURES

README = Path(__file__).parents[1] / "README.md"
REAL = FIXTURES / "real"


@pytest.fixture(scope="module")
def pricing():
    return Pricing.load(use_user_file=False)


def ns(day: str, time: str = "12:00") -> int:
    moment = datetime.datetime.fromisoformat(f"{day}T{time}+00:00")
    return int(moment.timestamp()) * 10**9


def llm(model, start_ns=None, provider=None, **tokens) -> Step:
    return Step(id="s", run_id="r", kind=StepKind.LLM, model=model, provider=provider,
                start_ns=start_ns, **tokens)  # fmt: skip


CASES = [  # (model, day, input, cache read, cache write, output, reasoning)
    ("gpt-4o-2024-08-06", "2025-06-01", 1000, 200, 0, 500, 0),
    ("o1-2024-12-17", "2025-07-02", 3841, 2816, 0, 1896, 1024),
    ("claude-sonnet-4-5-20250929", "2025-12-22", 5024, 3200, 1800, 310, 0),
    ("claude-sonnet-4-5-20250929", "2025-12-22", 250_000, 40_000, 10_000, 2000, 0),  # tier
    ("claude-sonnet-4-6", "2026-01-10", 250_000, 0, 0, 2000, 0),  # tiered then
    ("claude-sonnet-4-6", "2026-04-10", 250_000, 0, 0, 2000, 0),  # flat since 2026-03-13
    ("gemini-2.5-pro", "2025-09-01", 300_000, 100_000, 0, 5000, 1000),
    ("mistral-small-latest", "2025-11-01", 672, 0, 0, 16, 0),
    ("mistral-small-latest", "2026-04-01", 672, 0, 0, 16, 0),
    ("deepseek-chat", "2025-10-01", 10_000, 2000, 0, 800, 0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}@{c[1]}/{c[2]}")
def test_our_lines_add_up_to_the_catalogue_calculation(pricing, case):
    """Our per-usage-type lines (kept so the cost detail can show them) must total what
    genai-prices itself computes for the same usage and date."""
    model, day, tokens_in, read, write, out, reasoning = case
    start = ns(day)
    step = llm(model, start, input_tokens=tokens_in, cached_input_tokens=read,
               cache_creation_tokens=write, output_tokens=out, reasoning_tokens=reasoning)  # fmt: skip
    ours = explain_cost(step, pricing)
    usage = Usage(input_tokens=tokens_in, cache_read_tokens=read, cache_write_tokens=write,
                  output_tokens=out)  # fmt: skip
    moment = datetime.datetime.fromtimestamp(start / 1e9, datetime.UTC)
    theirs = calc_price(usage, model, genai_request_timestamp=moment)
    assert ours.source == CostSource.COMPUTED and ours.cost == theirs.total_price
    assert sum(line.cost for line in ours.lines) == ours.cost


def test_a_call_above_the_threshold_pays_the_tier_price(pricing):
    """claude-sonnet-4-5 above 200k input tokens: $6 in, $0.60 read, $7.50 write, $22.50 out
    per 1M on all tokens of the call (below: $3, $0.30, $3.75, $15)."""
    below = llm("claude-sonnet-4-5", input_tokens=200_000, output_tokens=1000)
    above = llm("claude-sonnet-4-5", input_tokens=200_001, cached_input_tokens=100_000,
                cache_creation_tokens=50_000, output_tokens=1000)  # fmt: skip
    assert explain_cost(below, pricing).cost == Decimal("0.6") + Decimal("0.015")
    expected = (50_001 * 6 + 100_000 * Decimal("0.6") + 50_000 * Decimal("7.5") + 1000 * Decimal("22.5")) / 10**6  # fmt: skip
    assert explain_cost(above, pricing).cost == expected


def test_the_price_in_force_at_the_steps_start(pricing):
    """mistral-small-latest went from $0.10/$0.30 to $0.15/$0.60 on 2026-03-16."""
    before = pricing.resolve("mistral-small-latest", start_ns=ns("2026-03-15", "23:59"))
    after = pricing.resolve("mistral-small-latest", start_ns=ns("2026-03-16", "00:01"))
    assert (before.input, before.output) == (Decimal("0.1"), Decimal("0.3"))
    assert (after.input, after.output, after.as_of) == (
        Decimal("0.15"),
        Decimal("0.6"),
        "2026-03-16",
    )
    # DeepSeek's off-peak hours (16:30-00:30 UTC) are cheaper.
    peak = pricing.resolve("deepseek-chat", start_ns=ns("2025-10-01", "12:00"))
    off_peak = pricing.resolve("deepseek-chat", start_ns=ns("2025-10-01", "20:00"))
    assert off_peak.input < peak.input


def test_cost_lines_read_as_the_detail_shows_them(pricing):
    step = llm("claude-sonnet-4-5", input_tokens=5024, cached_input_tokens=3200,
               cache_creation_tokens=1800, output_tokens=310)  # fmt: skip
    assert explain_cost(step, pricing).text() == (
        "24 in × $3/M + 3,200 cache read × $0.3/M + 1,800 cache write × $3.75/M"
        " + 310 out × $15/M = $0.012432"
    )
    priced = explain_cost(step, pricing)
    assert priced.price_source.endswith(": anthropic/claude-sonnet-4-5")
    assert explain_cost(llm("mystery-9000", input_tokens=5), pricing).text() == (
        "no price for model 'mystery-9000'"
    )


def _attribute_sets(path: Path) -> list[dict]:
    """Every OTLP attribute list in a JSON file, as {key: value}."""
    found: list[dict] = []

    def walk(node):
        if isinstance(node, dict):
            attributes = node.get("attributes")
            if isinstance(attributes, list) and attributes and "key" in attributes[0]:
                found.append({a["key"]: next(iter(a["value"].values()), None)
                              for a in attributes if a.get("value")})  # fmt: skip
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(orjson.loads(path.read_bytes()))
    return found


def test_openai_and_anthropic_usage_conventions(store, pricing):
    """OpenAI counts cache reads inside prompt tokens; Anthropic reports cache reads and
    writes on top of input. Each payload's raw numbers, given to genai-prices' own extractor
    of that provider's usage, must cost what the imported step costs here."""
    openai_file = REAL / "openinference" / "agent-prism_test_data_2.json"
    anthropic_file = FIXTURES / "recorded" / "langfuse-otlp" / "anthropic_cache.otlp.json"
    for path in (openai_file, anthropic_file):
        import_file(store, path, pricing=pricing)
    steps = [s for r in store.runs() for s in store.steps(r.id, payloads=False)]
    bodies = []
    for attrs in _attribute_sets(openai_file):
        if "llm.token_count.prompt_details.cache_read" in attrs:
            usage = {"prompt_tokens": int(attrs["llm.token_count.prompt"]),
                     "prompt_tokens_details": {
                         "cached_tokens": int(attrs["llm.token_count.prompt_details.cache_read"])},
                     "completion_tokens": int(attrs["llm.token_count.completion"])}  # fmt: skip
            bodies.append(("openai", attrs["llm.model_name"], usage["prompt_tokens"], usage))
    for attrs in _attribute_sets(anthropic_file):
        if "langfuse.observation.usage_details" in attrs:
            details = orjson.loads(attrs["langfuse.observation.usage_details"])
            usage = {"input_tokens": details["input"],
                     "cache_read_input_tokens": details["input_cache_read"],
                     "cache_creation_input_tokens": details["input_cache_creation"],
                     "output_tokens": details["output"]}  # fmt: skip
            total_in = (
                details["input"] + details["input_cache_read"] + details["input_cache_creation"]
            )
            bodies.append(("anthropic", attrs["langfuse.observation.model.name"], total_in, usage))
    assert {provider for provider, *_ in bodies} == {"openai", "anthropic"}
    cached = set()
    for provider, model, total_in, usage in bodies:
        [step] = [s for s in steps if s.model == model and s.input_tokens == total_in]
        if step.cached_input_tokens:  # cache reads, inside the step's input either way
            cached.add(provider)
        flavor = "chat" if provider == "openai" else "default"
        extracted = extract_usage({"model": model, "usage": usage}, provider_id=provider,
                                  api_flavor=flavor)  # fmt: skip
        moment = datetime.datetime.fromtimestamp(step.start_ns / 1e9, datetime.UTC)
        expected = extracted.calc_price(genai_request_timestamp=moment).total_price
        step.reported_cost = None
        assert explain_cost(step, pricing).cost == expected, provider
    assert cached == {"openai", "anthropic"}


def _disagreements_in_readme() -> set[tuple[str, str]]:
    """(file, step id) of the rows of the README's table of reported-cost disagreements."""
    text = README.read_text()
    section = text.split("### Reported costs that disagree", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", section, re.MULTILINE))


def test_real_reported_costs_match_our_prices_or_the_readme_says_why(tmp_path, pricing):
    """Every real-fixture step with a source-reported cost (Langfuse costDetails, LangSmith
    total_cost, any-agent gen_ai.usage.*_cost) and tokens is priced again from its tokens,
    model and start time; a difference over 1% must be listed in the README."""
    compared, over = 0, set()
    for path in sorted(REAL.rglob("*.json")):
        with Store(tmp_path / f"{path.stem}.db") as store:
            import_file(store, path, pricing=pricing)
            for run in store.runs():
                for step in store.steps(run.id, payloads=False):
                    reported = step.reported_cost
                    if reported is None or not (step.input_tokens or step.output_tokens):
                        continue
                    step.reported_cost = None
                    ours = explain_cost(step, pricing).cost
                    compared += 1
                    if ours is None or abs(ours - reported) > abs(reported) / 100:
                        over.add((path.name, step.id))
    assert compared >= 29  # the Langfuse and any-agent steps that carry a cost
    assert over == _disagreements_in_readme()


def test_exports_carry_parts_sources_dates_and_waste(tmp_path, pricing):
    with Store(tmp_path / "x.db") as store:
        import_file(store, FIXTURES / "recorded" / "otel-genai" / "retry_storm.otlp.json",
                    pricing=pricing)  # fmt: skip
        import_file(store, REAL / "other" / "any-agent_GOOGLE_trace.json", pricing=pricing)
        summary = summarize(store, pricing, by="run")
        waste = store.waste()
    assert waste.cost > 0 and summary.total.wasted_cost == waste.cost
    assert sum((r.wasted_cost for r in summary.rows), Decimal(0)) == waste.cost
    assert sum(summary.total.parts.values(), Decimal(0)) == summary.total.cost
    rows = list(csv.DictReader(io.StringIO(COST_WRITERS["csv"](summary))))
    total = rows[-1]
    assert Decimal(total["wasted_cost_usd"]) == waste.cost
    assert Decimal(total["reported_cost_usd"]) == Decimal("0.0002509")  # any-agent's own
    assert "genai-prices" in total["price_sources"] and "reported" in total["price_sources"]
    document = orjson.loads(COST_WRITERS["json"](summary))
    assert Decimal(document["total"]["input_cost_usd"]) == summary.total.parts["input"]
    assert "| wasted (USD) |" in COST_WRITERS["md"](summary)


def test_pricing_cli_names_source_and_date(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "cli.db"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["pricing", "mistral-small-latest", "--date", "2026-04-01"]) == 0
    out = capsys.readouterr().out
    assert "priced as mistral/mistral-small-latest" in out and "genai-prices" in out
    assert "in force since: 2026-03-16" in out and "$0.6/M" in out
    assert main(["pricing", "projects/p/locations/l/publishers/google/models/gemini-2.5-pro"]) == 0
    assert "above 200,000 input tokens" in capsys.readouterr().out
    assert main(["pricing", "mystery-9000"]) == 1
    assert "no price for model 'mystery-9000'" in capsys.readouterr().err
    path = REAL / "otlp" / "monocle_test_bedrock_finish_reason_integratio.console.json"
    assert main(["import", str(path)]) == 0
    capsys.readouterr()
    assert main(["pricing", "--check"]) == 1
    out = capsys.readouterr().out
    assert out == "ai21.jamba-1-5-mini-v1:0\t5 steps\n"  # Bedrock's Jamba: not in the catalogue


RECORDED_1H = FIXTURES / "recorded" / "langsmith" / "anthropic_cache_1h.multipart"


def test_one_hour_cache_writes_are_billed_at_the_one_hour_price(pricing):
    """Anthropic bills a 1-hour cache write higher than a 5-minute one ($6 and $3.75 per 1M
    for claude-sonnet-4-5); writes of unknown lifetime stay at the 5-minute price, and a
    price without a 1-hour figure bills them at the write price, as genai-prices does."""
    step = llm("claude-sonnet-4-5", ns("2025-12-22"), input_tokens=6242,
               cache_creation_tokens=6200, cache_write_1h_tokens=5000, output_tokens=96)  # fmt: skip
    priced = explain_cost(step, pricing)
    assert priced.text() == (
        "42 in × $3/M + 1,200 cache write × $3.75/M + 5,000 cache write 1h × $6/M"
        " + 96 out × $15/M = $0.036066"
    )
    usage = Usage(input_tokens=6242, cache_write_tokens=6200, cache_write_1h_tokens=5000,
                  output_tokens=96)  # fmt: skip
    moment = datetime.datetime.fromtimestamp(step.start_ns / 1e9, datetime.UTC)
    assert priced.cost == calc_price(usage, "claude-sonnet-4-5", genai_request_timestamp=moment).total_price  # fmt: skip
    assert priced.parts().cache_write_1h == 30_000_000_000  # pico-dollars: 5,000 × $6/M
    unsplit = llm("claude-sonnet-4-5", input_tokens=6242, cache_creation_tokens=6200,
                  output_tokens=96)  # fmt: skip
    assert "1h" not in explain_cost(unsplit, pricing).text()
    bedrock = "global.anthropic.claude-sonnet-4-20250514-v1:0"  # no 1-hour price there
    price = pricing.resolve(bedrock, "aws")
    assert price.cache_write_1h is None and price.cache_write == Decimal("3.75")
    step.model, step.provider = bedrock, "aws"
    [line] = [x for x in explain_cost(step, pricing).lines if x.usage == "cache_write_1h"]
    assert line.price == Decimal("3.75")


def test_recorded_wrap_anthropic_one_hour_writes(tmp_path, pricing):
    """The recorded Anthropic SDK + wrap_anthropic trace: the 1-hour writes are imported,
    priced at the catalogue's 1-hour price (the same total as genai-prices' own extraction
    of Anthropic's raw usage), stored as their own cost part and exported."""
    with Store(tmp_path / "x.db") as store:
        import_file(store, RECORDED_1H, pricing=pricing)
        [run] = store.runs()
        assert (run.cache_creation_tokens, run.cache_write_1h_tokens) == (6200, 5000)
        steps = [s for s in store.steps(run.id) if s.kind == StepKind.LLM]
        writer, reader = sorted(steps, key=lambda s: s.start_ns)
        assert (writer.cache_creation_tokens, writer.cache_write_1h_tokens) == (6200, 5000)
        assert (reader.cache_creation_tokens, reader.cache_write_1h_tokens) == (None, None)
        priced = explain_cost(writer, pricing)
        [line] = [x for x in priced.lines if x.usage == "cache_write_1h"]
        assert (line.quantity, line.price) == (5000, priced.price.cache_write_1h)
        assert line.price == Decimal(6)
        # What the Messages API returned, as genai-prices reads it (the recorder's script).
        raw = {"input_tokens": 42, "cache_creation_input_tokens": 6200,
               "cache_read_input_tokens": 0, "output_tokens": 96,
               "cache_creation": {"ephemeral_5m_input_tokens": 1200,
                                  "ephemeral_1h_input_tokens": 5000}}  # fmt: skip
        extracted = extract_usage({"model": writer.model, "usage": raw}, provider_id="anthropic")
        moment = datetime.datetime.fromtimestamp(writer.start_ns / 1e9, datetime.UTC)
        assert extracted.usage.cache_write_1h_tokens == 5000
        assert priced.cost == extracted.calc_price(genai_request_timestamp=moment).total_price
        assert writer.cost == priced.cost  # as stored at import
        summary = summarize(store, pricing, by="run")
    assert summary.total.parts["cache_write_1h"] == Decimal("0.03")
    assert summary.total.parts["cache_write"] == Decimal("0.0045")  # 1,200 × $3.75/M
    assert sum(summary.total.parts.values(), Decimal(0)) == summary.total.cost
    [row] = list(csv.DictReader(io.StringIO(COST_WRITERS["csv"](summary))))[-1:]
    assert (row["cache_creation_tokens"], row["cache_write_1h_tokens"]) == ("6200", "5000")
    assert Decimal(row["cache_write_1h_cost_usd"]) == Decimal("0.03")
    document = orjson.loads(COST_WRITERS["json"](summary))
    assert document["total"]["cache_write_1h_cost_usd"] == "0.03"
    assert "cache_write_1h 0.03" in COST_WRITERS["md"](summary)
    assert "6200 (5000 1h)" in COST_WRITERS["md"](summary)


def test_pricing_in_integers_equals_pricing_in_decimals():
    """An import prices a call in integer pico-dollars when the price allows: for every model
    of the catalogue, usage of every type, below and above tier thresholds and across
    dates, it must store exactly what the Decimal lines say (cost, source and parts)."""
    from genai_prices import data_snapshot

    from tracedesk.core.analysis.cost import _pusd_rates, price

    pricing = Pricing.load(use_user_file=False)
    usages = [dict(input_tokens=1200, output_tokens=300),
              dict(input_tokens=5024, cached_input_tokens=3200, cache_creation_tokens=1800,
                   cache_write_1h_tokens=600, output_tokens=310, reasoning_tokens=100),
              dict(input_tokens=250_000, cached_input_tokens=40_000, output_tokens=2000),
              dict(output_tokens=7)]  # fmt: skip
    priced = fast = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            for day in ("2025-06-01", "2026-04-10"):
                for usage in usages:
                    step = llm(model.id, ns(day), provider.id, **usage)
                    price(step, pricing)
                    expected = explain_cost(step, pricing)
                    assert (step.cost, step.cost_source, step.cost_parts) == (
                        expected.cost, expected.source, expected.parts()), (provider.id, model.id)  # fmt: skip
                    found = pricing.resolve(model.id, provider.id, ns(day))
                    priced += found is not None
                    fast += found is not None and _pusd_rates(found) is not None
    # Nearly every price is whole pico-dollars per token: the integer path is the one used.
    assert fast > 0.9 * priced > 10_000
