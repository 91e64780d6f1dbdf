from __future__ import annotations

import csv
import io
from decimal import Decimal

import orjson
import pytest

from tracedesk.cli import main
from tracedesk.core.analysis.cost import CostSource, explain_cost, explain_stored, price_step
from tracedesk.core.analysis.pricing import Pricing, PricingError, catalogue_version
from tracedesk.core.export import COST_WRITERS, csv_safe
from tracedesk.core.ingest import import_file, refresh_costs
from tracedesk.core.model import Step, StepKind, to_pusd
from tracedesk.core.summary import GROUPINGS, summarize

from .conftest import DEMO_FILE, DEMO_STEPS, FIXTURES, HEADER, REAL_FIXTURES, write_jsonl


@pytest.fixture
def pricing():
    return Pricing.load(use_user_file=False)


def step(**fields) -> Step:
    return Step(
        id=fields.pop("id", "s"), run_id="r", kind=fields.pop("kind", StepKind.LLM), **fields
    )


def test_computed_cost_by_hand(pricing):
    # gpt-4o: $2.50 in, $1.25 cached in, $10 out per 1M: 800 x 2.5 + 200 x 1.25 + 500 x 10.
    cost, source = price_step(
        step(
            model="gpt-4o-2024-08-06", input_tokens=1000, cached_input_tokens=200, output_tokens=500
        ),
        pricing,
    )
    assert (cost, source) == (Decimal("0.00725"), CostSource.COMPUTED)
    # o3-mini bills reasoning tokens as output: 1000 x 1.1 + 2000 x 4.4.
    cost, _ = price_step(
        step(model="o3-mini", input_tokens=1000, output_tokens=2000, reasoning_tokens=1500), pricing
    )
    assert cost == Decimal("0.0099")


def test_cache_writes_and_reads_are_priced_apart(pricing, store):
    """Anthropic's usage as the Langfuse SDK recorded it: 24 uncached + 3,200 cache reads +
    1,800 cache writes in, 310 out. claude-sonnet-4-5: $3 in, $0.30 read, $3.75 write, $15 out:
    24 x 3 + 3200 x 0.30 + 1800 x 3.75 + 310 x 15 = 12,432 micro-dollars."""
    import_file(store, FIXTURES / "recorded" / "langfuse-otlp" / "anthropic_cache.pb")
    [run] = store.runs()
    [call] = store.steps(run.id)
    assert (call.input_tokens, call.cached_input_tokens, call.cache_creation_tokens) == (
        5024, 3200, 1800)  # fmt: skip
    call.reported_cost = None
    assert price_step(call, pricing) == (Decimal("0.012432"), CostSource.COMPUTED)
    assert run.reported_cost == Decimal("0.012432")  # what the SDK was told it cost


def test_reported_cost_wins(pricing):
    reported = step(
        model="gpt-4o", input_tokens=1000, output_tokens=10, reported_cost=Decimal("0.5")
    )
    assert price_step(reported, pricing) == (Decimal("0.5"), CostSource.REPORTED)


def test_unknown_model_is_flagged_not_zero(pricing):
    assert price_step(step(model="mystery-9000", input_tokens=5), pricing) == (
        None,
        CostSource.UNKNOWN_MODEL,
    )
    assert price_step(step(input_tokens=5), pricing)[1] == CostSource.UNKNOWN_MODEL
    assert price_step(step(kind=StepKind.AGENT), pricing) == (None, CostSource.NONE)


@pytest.mark.parametrize(
    ("name", "provider", "label"),
    [("openai/gpt-4o-2024-08-06", None, "openai/gpt-4o"), ("GPT-4O", None, "openai/gpt-4o"),
     ("gpt-4o-mini-2024-07-18", None, "openai/gpt-4o-mini"),
     ("gpt-4o-2024-05-13", None, "openai/gpt-4o-2024-05-13"),
     ("gpt-4.1-2025-04-14", None, "openai/gpt-4.1"), ("o1-mini-2024-09-12", None, "openai/o1-mini"),
     ("azure/gpt-4o", None, "azure/gpt-4o"), ("gpt-4o", "azure.ai.openai", "azure/gpt-4o"),
     ("claude-3-5-sonnet-20241022", None, "anthropic/claude-3-5-sonnet"),
     ("claude-sonnet-4-5-20250929", "anthropic", "anthropic/claude-sonnet-4-5"),
     ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", None,
      "aws/regional.anthropic.claude-3-5-sonnet-20241022-v2:0"),
     ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", None,
      "aws/regional.anthropic.claude-3-haiku-20240307-v1:0"),
     ("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash", None,
      "google/gemini-2.5-flash"),
     ("projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929",
      None, "google/claude-sonnet-4-5"),
     ("models/gemini-2.0-flash-001", None, "google/gemini-2.0-flash"),
     ("gemini-2.0-flash", "gcp.vertex.agent", "google/gemini-2.0-flash"),
     ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together_ai",
      "together/meta-llama/Llama-3.3-70B-Instruct-Turbo"),
     ("deepseek/deepseek-chat", None, "deepseek/deepseek-chat"),
     ("mistral-large-latest", None, "mistral/mistral-large")],
)  # fmt: skip
def test_model_names_resolve_with_their_provider(pricing, name, provider, label):
    assert pricing.resolve(name, provider).label == label


def test_unknown_names_do_not_resolve(pricing):
    assert pricing.resolve("gpt-4ozzz") is None and pricing.resolve("mystery") is None
    assert pricing.resolve(None) is None
    # Without a provider, an open-weights name is sold by many: no guess, no price.
    assert pricing.resolve("meta-llama/Llama-3.3-70B-Instruct-Turbo") is None
    assert pricing.resolve("invalid.model.id", "aws.bedrock") is None


def test_every_sample_model_is_priced(pricing):
    from tracedesk.core.samples import MODELS

    assert all(pricing.resolve(m) for m in MODELS)


def test_user_file_overrides_and_extends(tmp_path):
    user = tmp_path / "pricing.json"
    user.write_text(
        '{"models": {"o3-mini": {"input": 1.1, "output": 4.4, "reasoning": 10},'
        ' "house-model": {"input": 1, "output": 2}},'
        ' "tools": {"geocode": {"per_call": "0.005"}}}'
    )
    pricing = Pricing.load(user_file=user)
    # 1000 x 1.1 + 500 x 4.4 + 1500 x 10 (reasoning now billed apart)
    cost, _ = price_step(
        step(model="o3-mini", input_tokens=1000, output_tokens=2000, reasoning_tokens=1500), pricing
    )
    assert cost == Decimal("0.0183")
    assert price_step(step(model="house-model-v2", output_tokens=1_000_000), pricing)[0] == 2
    tool = step(kind=StepKind.TOOL, tool_name="geocode")
    assert price_step(tool, pricing) == (Decimal("0.005"), CostSource.TOOL)
    assert pricing.fingerprint != Pricing.load(use_user_file=False).fingerprint


def test_bad_user_file_names_the_entry(tmp_path):
    user = tmp_path / "pricing.json"
    user.write_text('{"models": {"x": {"input": "cheap", "output": 1}}}')
    with pytest.raises(PricingError, match=r"pricing.json: models.x.input: 'cheap'"):
        Pricing.load(user_file=user)


def cost_trace(tmp_path, tool_name="search"):
    records = [
        HEADER,
        {"type": "run", "id": "r1", "name": "costed"},
        {"type": "step", "run_id": "r1", "id": "a", "kind": "agent", "name": "Planner",
         "start_ns": 0, "end_ns": 100},
        {"type": "step", "run_id": "r1", "id": "b", "parent_id": "a", "kind": "llm", "name": "chat",
         "model": "gpt-4o", "input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 500,
         "start_ns": 1, "end_ns": 10},
        {"type": "step", "run_id": "r1", "id": "c", "parent_id": "a", "kind": "tool",
         "name": tool_name, "tool_name": tool_name, "start_ns": 11, "end_ns": 20},
        {"type": "step", "run_id": "r1", "id": "d", "parent_id": "a", "kind": "llm", "name": "chat",
         "model": "gpt-4o-mini", "input_tokens": 2000, "output_tokens": 100,
         "reported_cost": "0.001", "start_ns": 21, "end_ns": 30},
        {"type": "step", "run_id": "r1", "id": "e", "parent_id": "a", "kind": "llm", "name": "chat",
         "model": "mystery-9000", "input_tokens": 10, "output_tokens": 1, "start_ns": 31,
         "end_ns": 40},
    ]  # fmt: skip
    return write_jsonl(tmp_path / "cost.jsonl", records)


def test_import_stores_costs(store, tmp_path, pricing):
    import_file(store, cost_trace(tmp_path), pricing=pricing)
    run = store.get_run("r1")
    assert run.cost == Decimal("0.00725") + Decimal("0.001") and run.unpriced_steps == 1
    steps = {s.id: s for s in store.steps("r1")}
    assert (steps["b"].cost, steps["b"].cost_source) == (Decimal("0.00725"), "computed")
    assert (steps["d"].cost_source, steps["e"].cost_source) == ("reported", "unknown_model")
    assert store.runs("cost_pusd DESC")[0].id == "r1"


def test_aggregates_add_up_exactly(store, pricing):
    from importlib.resources import as_file

    from tracedesk.resources import demo_traces

    with as_file(demo_traces()) as path:
        import_file(store, path, pricing=pricing)
    expected = sum((r.cost for r in store.runs()), Decimal(0))
    for by in GROUPINGS:
        summary = summarize(store, pricing, by=by)
        assert sum((r.cost for r in summary.rows), Decimal(0)) == summary.total.cost == expected
        assert sum(r.steps for r in summary.rows) == DEMO_STEPS


def test_groupings_made_in_one_pass_equal_each_made_from_the_steps(store, pricing):
    """The charts' three groupings come from one GROUP BY over (tool, model, kind): each
    must equal its own sums made step by step, for a selection and for every run."""
    from collections import defaultdict
    from importlib.resources import as_file

    from tracedesk.core.summary import summarize_many
    from tracedesk.resources import demo_traces

    with as_file(demo_traces()) as path:
        import_file(store, path, pricing=pricing)
    all_ids = store.run_ids()
    for run_ids in (all_ids[:7], all_ids, None):
        steps = [s for r in (run_ids or all_ids) for s in store.steps(r, payloads=False)]
        summaries = summarize_many(store, pricing, run_ids, ("tool", "kind"))
        for by, key_of in (("kind", lambda s: s.kind),
                           ("tool", lambda s: s.tool_name if s.kind == "tool" and s.tool_name
                            else f"({s.kind})")):  # fmt: skip
            expected: dict[str, list] = defaultdict(lambda: [0, Decimal(0)])
            for step in steps:
                expected[key_of(step)][0] += 1
                expected[key_of(step)][1] += step.cost or 0
            got = {r.key: [r.steps, r.cost] for r in summaries[by].rows}
            assert got == dict(expected), by


def test_groupings(store, tmp_path, pricing):
    import_file(store, cost_trace(tmp_path), pricing=pricing)
    by_agent = summarize(store, pricing, by="agent")
    assert [(r.key, r.steps) for r in by_agent.rows] == [("Planner", 5)]
    by_model = {r.key: r for r in summarize(store, pricing, by="model").rows}
    gpt4o = by_model["openai/gpt-4o"]
    assert gpt4o.cost == Decimal("0.00725")
    # 800 in x $2.50 + 200 cache read x $1.25 + 500 out x $10 per 1M, each part on its own.
    assert gpt4o.parts == {"input": Decimal("0.002"), "cache_read": Decimal("0.00025"),
                           "output": Decimal("0.005")}  # fmt: skip
    assert gpt4o.price_sources == {f"genai-prices {catalogue_version()}: openai/gpt-4o"}
    assert by_model["openai/gpt-4o-mini"].parts == {"reported": Decimal("0.001")}
    assert by_model["mystery-9000"].unpriced_steps == 1
    assert summarize(store, pricing, by="tool").rows[0].key == "(llm)"
    assert summarize(store, pricing, by="model").unknown_models == {"mystery-9000": 1}
    with pytest.raises(ValueError, match="cannot group"):
        summarize(store, pricing, by="colour")


def test_cumulative_cost(store, tmp_path, pricing):
    import_file(store, cost_trace(tmp_path), pricing=pricing)
    points = store.cumulative_cost("r1")
    assert points == [(10, Decimal("0.00725")), (30, Decimal("0.00825"))]


def test_exports_parse_back(store, tmp_path, pricing):
    import_file(store, cost_trace(tmp_path, tool_name='=HYPERLINK("http://x")'), pricing=pricing)
    summary = summarize(store, pricing, by="tool")
    rows = list(csv.DictReader(io.StringIO(COST_WRITERS["csv"](summary))))
    assert rows[-1]["key"] == "total" and Decimal(rows[-1]["cost_usd"]) == summary.total.cost
    assert any(r["key"].startswith("'=HYPERLINK") for r in rows)  # not a live formula
    document = orjson.loads(COST_WRITERS["json"](summary))
    assert Decimal(document["total"]["cost_usd"]) == Decimal("0.00825")
    assert document["unknown_models"] == {"mystery-9000": 1}
    markdown = COST_WRITERS["md"](summary)
    assert "| **Total** | 5 |" in markdown and "`mystery-9000`" in markdown


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx"])
def test_csv_injection_is_escaped(text):
    assert csv_safe(text) == "'" + text
    assert csv_safe("plain") == "plain" and csv_safe(-1) == -1


def test_costs_follow_a_pricing_change(store, tmp_path, pricing):
    import_file(store, cost_trace(tmp_path), pricing=pricing)
    assert not refresh_costs(store, pricing)
    user = tmp_path / "pricing.json"
    user.write_text('{"models": {"mystery-9000": {"input": 100000, "output": 0}}}')
    assert refresh_costs(store, Pricing.load(user_file=user))
    assert (
        store.get_run("r1").cost == Decimal("0.00825") + 1
        and store.get_run("r1").unpriced_steps == 0
    )


def test_costs_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "cli.db"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["import", str(cost_trace(tmp_path))]) == 0
    capsys.readouterr()
    assert main(["costs", "--by", "model"]) == 0
    captured = capsys.readouterr()
    assert "gpt-4o" in captured.out and "$0.008250+?" in captured.out
    assert "no price" in captured.out  # the mystery model's row, never $0
    assert "no price for model 'mystery-9000'" in captured.err
    out = tmp_path / "summary.csv"
    assert main(["costs", "r1", "--by", "kind", "--format", "csv", "-o", str(out)]) == 0
    assert out.read_text().startswith("key,label,steps")
    assert main(["pricing"]) == 0
    captured = capsys.readouterr()
    assert "gpt-4o-mini" in captured.out and "missing: mystery-9000 (1 steps)" in captured.err
    (tmp_path / "config" / "tracedesk").mkdir(parents=True)
    (tmp_path / "config" / "tracedesk" / "pricing.json").write_text("{bad")
    assert main(["costs"]) == 1
    assert "malformed JSON" in capsys.readouterr().err


def test_costs_cli_selects_by_request_and_date(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "cli.db"))
    assert main(["demo"]) == 0
    from tracedesk.core.store import Store

    with Store(tmp_path / "cli.db") as store:
        runs = store.runs("start_ns ASC")
    oslo = [r for r in runs if "Oslo" in (r.request or "")]
    capsys.readouterr()
    assert main(["costs", "--request", oslo[0].id, "--format", "json"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert sorted(document["runs"]) == sorted(r.id for r in oslo)
    middle = runs[15].start_ns
    import datetime

    since = datetime.datetime.fromtimestamp(middle / 1e9, datetime.UTC).isoformat()
    assert main(["costs", "--since", since, "--format", "json"]) == 0
    assert len(orjson.loads(capsys.readouterr().out)["runs"]) == 15
    assert main(["costs", "--until", "2000-01-01"]) == 1
    assert "no runs match" in capsys.readouterr().err


def test_costs_by_model_group_under_the_stored_price_label_without_the_catalogue(
    tmp_path, monkeypatch
):
    """Costs by model group under the label of the price each step was priced with, read
    from the database: the catalogue (0.2 s to load) is only asked about models whose
    steps have no stored price (reported costs, unknown models)."""
    from tracedesk.core.analysis import pricing as pricing_module
    from tracedesk.core.export import native_lines
    from tracedesk.core.samples import generate
    from tracedesk.core.store import Store

    trace = tmp_path / "demo.jsonl"
    trace.write_bytes(b"".join(native_lines(generate(20, seed=3))))
    with Store(tmp_path / "db.sqlite") as store:
        import_file(store, trace)
        expected = summarize(store, Pricing.load(), by="model")
        looked_up: list[str] = []
        find = pricing_module._find_in_catalogue
        monkeypatch.setattr(pricing_module, "_find_in_catalogue",
                            lambda model, provider: looked_up.append(model) or find(model, provider))  # fmt: skip
        summary = summarize(store, Pricing.load(), by="model")
        computed = {m for (m,) in store.conn.execute(
            "SELECT DISTINCT model FROM steps WHERE cost_source = 'computed'")}  # fmt: skip
    assert [(r.key, r.cost) for r in summary.rows] == [(r.key, r.cost) for r in expected.rows]
    assert any("/" in r.key for r in summary.rows) and computed  # provider/model labels
    assert not computed & set(looked_up)  # only models with no stored price are looked up


def test_stored_costs_explain_as_the_catalogue_does(store, pricing, tmp_path):
    """A step's details explain its cost from what the store keeps (no catalogue to load):
    the same lines, cost, price and date as pricing the step afresh, on every step of the
    real and recorded fixtures and the demo, and on shapes they lack (a tier, 1-hour cache
    writes, reasoning, a tool price, an unknown model, a reported cost)."""
    shapes = [{"model": "gemini-2.5-pro", "input_tokens": 250_000, "output_tokens": 900,
               "reasoning_tokens": 400},
              {"model": "claude-sonnet-4-5", "input_tokens": 9_000, "output_tokens": 50,
               "cached_input_tokens": 1_000, "cache_creation_tokens": 3_000,
               "cache_write_1h_tokens": 1_000},
              {"model": "gpt-4o", "input_tokens": 7, "output_tokens": 3, "cost": "0.25"},
              {"model": "mystery-9000", "input_tokens": 5},
              {"kind": "tool", "tool_name": "web_search"}]  # fmt: skip
    shaped = write_jsonl(tmp_path / "shapes.jsonl", [HEADER, {"type": "run", "id": "shapes"}] + [
        {"type": "step", "run_id": "shapes", "id": f"s{n}", "kind": "llm", "start_ns": 1_760_000_000 * 10**9,
         **fields} for n, fields in enumerate(shapes)])  # fmt: skip
    files = [*REAL_FIXTURES.rglob("*.json"), *(FIXTURES / "recorded").rglob("*.pb"),
             *(FIXTURES / "recorded" / "openai-agents").glob("*.jsonl"), DEMO_FILE, shaped]  # fmt: skip
    for path in files:
        import_file(store, path, pricing=pricing)
    sources: set[str] = set()
    for run_id in store.run_ids():
        for listed in store.steps(run_id, payloads=False):
            step = store.step(run_id, listed.id)
            assert step is not None
            stored, fresh = explain_stored(step), explain_cost(step, pricing)
            assert stored is not None, step
            sources.add(stored.source)
            assert (stored.source, stored.text() if not stored.lines else None) == (
                fresh.source, fresh.text() if not fresh.lines else None), step  # fmt: skip
            assert (to_pusd(stored.cost), stored.price_source, stored.price_date) == (
                to_pusd(fresh.cost), fresh.price_source, fresh.price_date), step  # fmt: skip
            assert [(line.usage, line.quantity, to_pusd(line.cost)) for line in stored.lines] == [
                (line.usage, line.quantity, to_pusd(line.cost)) for line in fresh.lines], step  # fmt: skip
            for ours, theirs in zip(stored.lines, fresh.lines, strict=True):
                assert abs(ours.price - theirs.price) <= theirs.price * Decimal("1e-8"), step
    assert sources == set(CostSource)
