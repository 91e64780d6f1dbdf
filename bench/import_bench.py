"""Import throughput and peak memory on a large OTLP JSON Lines file, beside the raw floor.

    python bench/import_bench.py [--spans 1000000] [--rounds 1] [--keep] [--conversations]

Generates a deterministic OTLP file (one collector-exporter line per trace of 20 spans with
GenAI attributes), then, each in a fresh process:
  - import: ``tracedesk.core.importers.import_file`` into a new database;
  - floor:  orjson parse of every line + sqlite3 ``executemany`` of the same step rows into
            the same schema, in one transaction (no mapping, no tree, no totals).
Prints spans/s, peak RSS and the ratio import/floor. Targets: ratio >= 50 %, RSS < 1 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPANS_PER_TRACE = 20
MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini", "claude-3-5-sonnet-20241022", "gemini-2.0-flash")
TOOLS = ("search_docs", "lookup_order", "run_sql", "get_weather")


def _kv(key: str, value: object) -> dict:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def generate(path: Path, spans: int, seed: int = 1, conversations: bool = False) -> None:
    """``conversations``: each model call's input is the run's conversation so far (a
    question of ~1 kB more each call) and its output a ~2 kB answer, as traces with content
    capture on carry them; else one short question."""
    rng = random.Random(seed)
    t0 = 1_760_000_000_000_000_000
    with path.open("w") as out:
        for trace in range(spans // SPANS_PER_TRACE):
            trace_id = f"{rng.getrandbits(128):032x}"
            root = f"{rng.getrandbits(64):016x}"
            start = t0 + trace * 60_000_000_000
            history: list[dict] = []
            items = [{
                "traceId": trace_id, "spanId": root, "name": "invoke_agent Support", "kind": 1,
                "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 30_000_000_000),
                "attributes": [_kv("gen_ai.operation.name", "invoke_agent"),
                               _kv("gen_ai.agent.name", "Support"),
                               _kv("gen_ai.conversation.id", f"conv-{trace % 977}")],
                "status": {"code": 1},
            }]  # fmt: skip
            for n in range(1, SPANS_PER_TRACE):
                begin = start + n * 1_000_000_000
                span = {
                    "traceId": trace_id, "spanId": f"{rng.getrandbits(64):016x}",
                    "parentSpanId": root, "kind": 3, "startTimeUnixNano": str(begin),
                    "endTimeUnixNano": str(begin + rng.randint(50, 900) * 1_000_000),
                    "status": {"code": 1},
                }  # fmt: skip
                if n % 2:
                    model = rng.choice(MODELS)
                    span["name"] = f"chat {model}"
                    question = f"Question {trace}"
                    if conversations:
                        question = f"Look into item {rng.randint(1, 999)} and explain. " * 20
                    history.append(
                        {"role": "user", "parts": [{"type": "text", "content": question}]}
                    )
                    span["attributes"] = [
                        _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", model),
                        _kv("gen_ai.provider.name", "openai"),
                        _kv("gen_ai.usage.input_tokens", rng.randint(200, 4000)),
                        _kv("gen_ai.usage.output_tokens", rng.randint(10, 600)),
                        _kv("gen_ai.input.messages", json.dumps(history if conversations else history[-1:])),
                    ]  # fmt: skip
                    if conversations:
                        answer = [{"role": "assistant", "parts": [{"type": "text", "content":
                                   f"Item {rng.randint(1, 999)} was refunded because " * 40}]}]  # fmt: skip
                        span["attributes"].append(_kv("gen_ai.output.messages", json.dumps(answer)))
                else:
                    tool = rng.choice(TOOLS)
                    span["name"] = f"execute_tool {tool}"
                    span["attributes"] = [
                        _kv("gen_ai.operation.name", "execute_tool"), _kv("gen_ai.tool.name", tool),
                        _kv("gen_ai.tool.call.id", f"call_{n}"),
                        _kv("gen_ai.tool.call.arguments", json.dumps({"q": f"item {rng.randint(1, 99)}"})),
                    ]  # fmt: skip
                items.append(span)
            rng.shuffle(items)  # the file exporter guarantees no order
            request = {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "bench")]},
                                          "scopeSpans": [{"scope": {"name": "bench"}, "spans": items}]}]}  # fmt: skip
            out.write(json.dumps(request, separators=(",", ":")) + "\n")


def as_one_document(lines: Path, document: Path) -> None:
    """The JSON Lines requests merged into one OTLP request, written as a stream."""
    with lines.open("rb") as source, document.open("wb") as out:
        out.write(b'{"resourceSpans":[')
        for n, line in enumerate(source):
            body = line.strip()[len(b'{"resourceSpans":[') : -2]  # this line's resourceSpans
            out.write((b"," if n else b"") + body)
        out.write(b"]}")


def build() -> str:
    """Which tracedesk the children import: the wheel's compiled modules, or the sources."""
    from tracedesk.core import ingest

    if ingest.__file__ and not ingest.__file__.endswith(".py"):
        return "compiled with mypyc (a wheel install, see setup.py)"
    return "plain Python (an editable install: `pip install .` compiles, see setup.py)"


def run_import(trace_file: str, db: str) -> dict:
    from tracedesk.core.ingest import import_file
    from tracedesk.core.store import Store

    started = time.perf_counter()
    with Store(db) as store:
        result = import_file(store, trace_file)
    return {"seconds": time.perf_counter() - started, "spans": result.steps}


def run_floor(trace_file: str, db: str) -> dict:
    import orjson

    from tracedesk.core.store import Store
    from tracedesk.core.store.schema import INSERT_STEP_SQL, STEP_COLUMNS

    started = time.perf_counter()
    with Store(db) as store:
        conn = store.conn
        conn.execute("PRAGMA foreign_keys=OFF")  # the floor writes steps without runs
        conn.execute("BEGIN")
        count, batch = 0, []
        with open(trace_file, "rb") as f:
            for line in f:
                for rs in orjson.loads(line)["resourceSpans"]:
                    for ss in rs["scopeSpans"]:
                        for s in ss["spans"]:
                            row = dict.fromkeys(STEP_COLUMNS)
                            row.update(
                                run_id=s["traceId"],
                                id=s["spanId"],
                                parent_id=s.get("parentSpanId"),
                                depth=0,
                                kind="other",
                                name=s["name"],
                                status="ok",
                                start_ns=int(s["startTimeUnixNano"]),
                                end_ns=int(s["endTimeUnixNano"]),
                                attributes=orjson.dumps(s["attributes"]).decode(),
                            )
                            batch.append(tuple(row.values()))
                if len(batch) >= 5000:
                    conn.executemany(INSERT_STEP_SQL, batch)
                    count += len(batch)
                    batch.clear()
        conn.executemany(INSERT_STEP_SQL, batch)
        count += len(batch)
        conn.execute("COMMIT")
    return {"seconds": time.perf_counter() - started, "spans": count}


def run_costs(trace_file: str, db: str) -> dict:
    """``costs --by model`` as the CLI computes it, on the imported database."""
    from tracedesk.core.analysis.pricing import Pricing
    from tracedesk.core.store import Store
    from tracedesk.core.summary import summarize

    started = time.perf_counter()
    with Store(db) as store:
        summary = summarize(store, Pricing.load(use_user_file=False), by="model")
    return {"seconds": time.perf_counter() - started, "spans": summary.total.steps}


def run_costs_floor(trace_file: str, db: str) -> dict:
    """The same sums as one plain SQL GROUP BY (float costs: no exactness, no pricing)."""
    import sqlite3

    started = time.perf_counter()
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT model, count(*), sum(input_tokens), sum(output_tokens), sum(cost_pusd)"
        " FROM steps GROUP BY model"
    ).fetchall()
    return {"seconds": time.perf_counter() - started, "spans": sum(r[1] for r in rows)}


def run_check(trace_file: str, db: str) -> dict:
    """``tracedesk check FILE``: import into a scratch database and report the incidents."""
    import contextlib
    import io

    from tracedesk.cli import main as cli

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli(["check", trace_file])
    return {"seconds": time.perf_counter() - started, "spans": 0}


def run_refuse(trace_file: str, db: str) -> dict:
    """An import that must be refused (a decompression bomb): the time and memory it took."""
    from tracedesk.core.importers.base import TraceFormatError

    started = time.perf_counter()
    with contextlib.suppress(TraceFormatError):
        run_import(trace_file, db)
    return {"seconds": time.perf_counter() - started, "spans": 0}


MODES = {"import": run_import, "refuse": run_refuse, "floor": run_floor, "costs": run_costs,
         "costs-floor": run_costs_floor, "check": run_check}  # fmt: skip


def measure(mode: str, trace_file: Path, folder: Path, db: str | None = None) -> dict:
    """Run one mode in a fresh interpreter so that its peak RSS is its own."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(trace_file), db or str(folder / f"{mode}.db")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--conversations", action="store_true",
                        help="model calls carry the conversation so far and an answer")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="floor and import in turn this many times (the machine's load moves"
                             " both): the median ratio, and its range")  # fmt: skip
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, trace_file, db = args.child
        figures = MODES[mode](trace_file, db)
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    folder = Path(tempfile.mkdtemp(prefix="tracedesk-bench-"))
    trace_file = folder / "spans.otlp.jsonl"
    started = time.perf_counter()
    generate(trace_file, args.spans, conversations=args.conversations)
    size_mb = trace_file.stat().st_size / 1e6
    print(
        f"generated {args.spans:,} spans, {size_mb:,.0f} MB in {time.perf_counter() - started:.1f} s"
    )
    print(f"tracedesk: {build()}")
    ratios = []
    for _ in range(args.rounds):  # the floor and the import in turn, each into a new database
        for old in [*folder.glob("floor.db*"), *folder.glob("import.db*")]:
            old.unlink()
        floor = measure("floor", trace_file, folder)
        imported = measure("import", trace_file, folder)
        for name, fig in (("raw floor", floor), ("tracedesk import", imported)):
            rate = fig["spans"] / fig["seconds"]
            print(f"{name:>17}: {fig['spans']:,} spans in {fig['seconds']:.1f} s = {rate:,.0f} spans/s,"
                  f" peak RSS {fig['peak_rss_mb']:,.0f} MB")  # fmt: skip
        ratios.append(floor["seconds"] / imported["seconds"])
    ratios.sort()
    spread = (
        f", {ratios[0]:.0%}–{ratios[-1]:.0%} in {len(ratios)} rounds" if len(ratios) > 1 else ""
    )
    print(f"ratio import/floor: {ratios[len(ratios) // 2]:.0%}{spread} (target: 100%);"
          " peak RSS target < 300 MB")  # fmt: skip
    db = str(folder / "import.db")
    size = sum(f.stat().st_size for f in folder.glob("import.db*"))
    floor_size = sum(f.stat().st_size for f in folder.glob("floor.db*"))
    print(f"database: {size / args.spans:,.0f} B/span (floor {floor_size / args.spans:,.0f});"
          " target <= 500")  # fmt: skip
    costs, costs_floor = (
        measure("costs", trace_file, folder, db),
        measure("costs-floor", trace_file, folder, db),
    )
    print(
        f"costs --by model: {costs['seconds']:.2f} s, peak RSS {costs['peak_rss_mb']:,.0f} MB"
        f" (SQL GROUP BY floor {costs_floor['seconds']:.2f} s); target < 1.5 s at 1M"
    )
    check = measure("check", trace_file, folder)
    print(
        f"check FILE: {check['seconds']:.1f} s, peak RSS {check['peak_rss_mb']:,.0f} MB;"
        " target < 20 s and 300 MB at 1M"
    )
    document = folder / "spans.otlp.json"
    as_one_document(trace_file, document)
    streamed = measure("import", document, folder, str(folder / "document.db"))
    print(f"the same spans as one {document.stat().st_size / 1e6:,.0f} MB OTLP document:"
          f" {streamed['seconds']:.1f} s, peak RSS {streamed['peak_rss_mb']:,.0f} MB"
          " (parsed as a stream); target < 300 MB")  # fmt: skip
    bomb = folder / "bomb.json.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:  # ~2 MB that inflate to 2 GB
        out.write(b'{"resourceSpans": [')
        for _ in range(2048):
            out.write(b" " * (1 << 20))
        out.write(b"]}")
    refused = measure("refuse", bomb, folder)
    print(f"a {bomb.stat().st_size / 1e6:.1f} MB gzip bomb (2 GB inflated): refused in"
          f" {refused['seconds']:.1f} s, peak RSS {refused['peak_rss_mb']:,.0f} MB")  # fmt: skip
    if not args.keep:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
