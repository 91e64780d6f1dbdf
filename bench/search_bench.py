"""Search: what the full-text index costs (import time, bytes per span) and what it buys
(the first page of a search beside a plain LIKE scan of the same database).

    python bench/search_bench.py [--spans 200000] [--keep DIR]

Generates the OTLP file of ``import_bench.py`` (20 spans a trace, GenAI attributes), then,
each in a fresh process:
  - lazy:   import, then build the index as the first search does (``index_steps``);
  - inline: import with the index built in the import's transaction (``index_search``).
Then, on the lazy database, times each query's first page (50 steps) and its runs, through
the index and through the LIKE scan that runs when the index is off, best of 3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from import_bench import generate

QUERIES = (
    "search_docs",
    '"Question 420"',
    "lookup_order item",
    "Question 99999",
    "tool:run_sql",
    "model:gpt-4o* tokens>3000",
    "kind:llm cost>0.01",
    "duration>800ms",
    "attr.gen_ai.provider.name=openai",
    "search_docs OR run_sql",
    "NOT kind:llm",
    # Field filters that match nothing: found from the runs' totals and partial indexes.
    "tool:no_such_tool",
    "kind:handoff",
    "status:error",
    "cost>5",
    "finding:retry_storm",
    "tool:run_sql cost>0.01",
)
PAGE = 50


def run_import(trace_file: str, db: str, inline: bool) -> dict:
    from tracedesk.core.ingest import import_file
    from tracedesk.core.store import Store

    started = time.perf_counter()
    with Store(db) as store:
        result = import_file(store, trace_file, index_search=inline)
    imported = time.perf_counter() - started
    before = Path(db).stat().st_size
    with Store(db) as store:
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = Path(db).stat().st_size
        if not inline:
            started = time.perf_counter()
            store.index_steps()
            indexed = time.perf_counter() - started
        else:
            indexed = 0.0
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        fts_pages = store.conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'steps_fts%'"
        ).fetchone()[0]
    return {"spans": result.steps, "import_s": imported, "index_s": indexed,
            "size": Path(db).stat().st_size, "size_before_index": before,
            "fts_bytes": fts_pages or 0}  # fmt: skip


def best(fn, repeat: int = 3) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return min(times), value


def run_queries(db: str) -> list[dict]:
    from tracedesk.core.search import compile_query, parse
    from tracedesk.core.store import Store

    rows = []
    with Store(db) as store:
        store.conn.execute("SELECT count(*) FROM steps").fetchone()  # warm the cache alike
        for query in QUERIES:
            node = parse(query)
            fts_s, found = best(lambda n=node: store.find_steps(n, PAGE))
            runs_s, runs = best(lambda n=node: store.find_runs(n, PAGE))
            like = compile_query(node, fts=False)
            sql, params = store._matching(like, "SELECT s.run_id, s.id")
            page = f"{sql} ORDER BY s.rowid LIMIT {PAGE}"
            like_s, scanned = best(lambda p=page, v=params: store.conn.execute(p, v).fetchall())
            rows.append({"query": query, "fts_ms": fts_s * 1000, "runs_ms": runs_s * 1000,
                         "like_ms": like_s * 1000, "found": len(found),  # type: ignore[arg-type]
                         "like_found": len(scanned), "runs": len(runs)})  # type: ignore[arg-type]  # fmt: skip
    return rows


def in_child(*args: str) -> dict | list:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--keep", type=Path, help="keep the file and databases in this folder")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "import":
            result = run_import(rest[0], rest[1], rest[2] == "inline")
        else:
            result = run_queries(rest[0])  # type: ignore[assignment]
        print(json.dumps(result))
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="search_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    trace = folder / f"otlp_{args.spans}.jsonl"
    if not trace.exists():
        generate(trace, args.spans)
    for name in ("lazy.db", "inline.db"):
        for suffix in ("", "-wal", "-shm"):
            (folder / (name + suffix)).unlink(missing_ok=True)
    lazy = in_child("--child", "import", str(trace), str(folder / "lazy.db"), "lazy")
    inline = in_child("--child", "import", str(trace), str(folder / "inline.db"), "inline")
    assert isinstance(lazy, dict) and isinstance(inline, dict)
    spans = lazy["spans"]
    print(f"{spans:,} spans")
    print(
        f"import without index  {lazy['import_s']:6.1f} s   database {lazy['size_before_index'] / spans:.0f} B/span"
    )
    print(
        f"  index on first search {lazy['index_s']:6.1f} s   (+{lazy['index_s'] / lazy['import_s']:.0%} of the import)"
    )
    print(
        f"import with index     {inline['import_s']:6.1f} s   (+{inline['import_s'] / lazy['import_s'] - 1:.0%})"
    )
    print(f"index size            {lazy['fts_bytes'] / spans:6.0f} B/span  (database {lazy['size'] / spans:.0f} B/span with it)")  # fmt: skip
    print(f"\n{'query':36} {'FTS page':>9} {'runs':>8} {'LIKE page':>10}  found")
    queries = in_child("--child", "queries", str(folder / "lazy.db"))
    assert isinstance(queries, list)
    for row in queries:
        print(f"{row['query']:36} {row['fts_ms']:7.1f}ms {row['runs_ms']:6.1f}ms"
              f" {row['like_ms']:8.1f}ms  {row['found']}/{row['like_found']} steps,"
              f" {row['runs']} runs")  # fmt: skip


if __name__ == "__main__":
    main()
