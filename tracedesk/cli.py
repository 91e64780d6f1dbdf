"""Command line: ``tracedesk`` opens the GUI; subcommands work on the database headless.

Exit codes: 0 ok, 1 a user error (bad file, unknown run …) reported in one line.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import multiprocessing
import os
import shutil
import sqlite3
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import orjson

from tracedesk import __version__
from tracedesk.core.analysis.compare import compare_runs, request_fingerprint
from tracedesk.core.analysis.loops import Rules, RulesError, detect
from tracedesk.core.analysis.pricing import (
    ModelPrice,
    Pricing,
    PricingError,
    user_pricing_path,
)
from tracedesk.core.export import (
    CHECK_REPORTS,
    COST_FORMATS,
    COST_WRITERS,
    DIFF_WRITERS,
    atomic_output,
    cost_text,
    failing,
    format_usd,
    incident_lines,
    native_lines,
    waste_text,
    write_native,
    write_text_atomically,
)
from tracedesk.core.importers import FORMATS
from tracedesk.core.importers.base import TraceFormatError
from tracedesk.core.ingest import import_file, refresh_costs, refresh_incidents
from tracedesk.core.model import SEVERITIES, ImportResult, Status
from tracedesk.core.samples import generate
from tracedesk.core.search import SearchError, parse
from tracedesk.core.store import Store, StoreError, default_db_path
from tracedesk.core.store.db import database_problem
from tracedesk.core.summary import GROUPINGS, summarize
from tracedesk.core.text import (
    format_count,
    format_duration,
    incidents_text,
    plural,
    shorten,
    table,
    visible,
    walk_tree,
)
from tracedesk.resources import demo_traces

LARGE_FILE = 8 * 1024 * 1024  # show progress for files bigger than this
SHOWN_WARNINGS = 10


class UserError(Exception):
    """Reported as one line on stderr with exit code 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracedesk", description="Look at what LLM agents actually did."
    )
    parser.add_argument("--version", action="version", version=f"tracedesk {__version__}")
    parser.add_argument(
        "--db", type=Path, help=f"database file (default: $TRACEDESK_DB or {default_db_path()})"
    )
    # --db may also come after the command ("tracedesk runs --db PATH").
    db_option = argparse.ArgumentParser(add_help=False)
    db_option.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="database file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("import", parents=[db_option], help="import trace files into the database")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--format", choices=sorted(FORMATS), help="skip detection, read as this")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad records")

    p = sub.add_parser("runs", parents=[db_option], help="list the runs in the database")
    p.add_argument(
        "--sort", default="start_ns", choices=["start_ns", "name", "cost_pusd", "step_count"]
    )
    p.add_argument("--limit", type=int, default=None)

    p = sub.add_parser("find", parents=[db_option],
                       help="find steps (or runs) with the search language (see README)")  # fmt: skip
    p.add_argument("query", metavar="QUERY", help="e.g. 'tool:fetch_url status:error'")
    p.add_argument("--runs", action="store_true", help="list the runs that have matching steps")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")

    p = sub.add_parser("sessions", parents=[db_option],
                       help="list sessions (conversations), or the runs of one")  # fmt: skip
    p.add_argument("session_id", nargs="?", metavar="SESSION_ID")

    p = sub.add_parser("delete", parents=[db_option], help="delete runs from the database")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="run ids or unambiguous prefixes")

    p = sub.add_parser("search-index", parents=[db_option],
                       help="turn the full-text index on or off, or build it now")  # fmt: skip
    p.add_argument("action", choices=["status", "on", "off", "build"])

    p = sub.add_parser("show", parents=[db_option], help="print a run's step tree")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or an unambiguous prefix")

    p = sub.add_parser("export", parents=[db_option], help="write runs as tracedesk JSONL")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    p.add_argument("-o", "--output", type=Path, required=True)

    p = sub.add_parser(
        "costs", parents=[db_option], help="cost summary of runs (all runs by default)"
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p.add_argument("--by", choices=GROUPINGS, default="run")
    p.add_argument("--request", metavar="RUN_ID", help="all runs of the same request as this run")
    p.add_argument(
        "--since", type=_date, metavar="DATE", help="runs started on or after (ISO date/time, UTC)"
    )
    p.add_argument(
        "--until", type=_date, metavar="DATE", help="runs started before (ISO date/time, UTC)"
    )
    p.add_argument("--format", choices=("table", *COST_FORMATS), default="table")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")

    p = sub.add_parser(
        "pricing", parents=[db_option],
        help="a model's price and where it came from; the models in the database without one",
    )  # fmt: skip
    p.add_argument("model", nargs="?", metavar="MODEL", help="show this model's price")
    p.add_argument("--provider", help="the provider the model was called through")
    p.add_argument("--date", type=_date, metavar="DATE",
                   help="the price in force then (ISO date, UTC; default: now)")  # fmt: skip
    p.add_argument("--check", action="store_true",
                   help="list the models in the database that have no price; exit 1 if any")  # fmt: skip
    p.add_argument("--all", action="store_true", help="also list the user's pricing.json models")

    p = sub.add_parser(
        "check", parents=[db_option], help="find retry loops and runaway runs; exit 1 if any"
    )
    p.add_argument("targets", nargs="+", metavar="FILE_OR_RUN",
                   help="trace files (checked in a scratch database) or run ids")  # fmt: skip
    p.add_argument("--max-steps", type=int, help="runaway limit on model and tool calls")
    p.add_argument("--max-cost", type=float, metavar="USD", help="runaway limit on cost")
    p.add_argument("--rules", type=Path, help="a loop_rules.toml to use")
    p.add_argument("--severity", choices=SEVERITIES, default="warning",
                   help="fail on incidents at or above this (default: warning)")  # fmt: skip
    p.add_argument("--format", choices=("text", "json", "junit"), default="text")
    p.add_argument("-o", "--output", type=Path, help="write the report to this file")

    p = sub.add_parser("diff", parents=[db_option], help="compare two runs step by step")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--format", choices=tuple(DIFF_WRITERS), default="text")

    p = sub.add_parser(
        "serve", parents=[db_option],
        help="receive traces live over OTLP/HTTP (/v1/traces) until Ctrl+C",
    )  # fmt: skip
    p.add_argument("--port", type=int, help="port to listen on (default: 4318)")
    p.add_argument("--host", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--quiet-seconds", type=float, default=None, metavar="S",
                   help="analyse a run once no span of it arrived for this long (default: 3)")  # fmt: skip

    p = sub.add_parser(
        "demo", parents=[db_option], help="fill the database with the built-in sample runs"
    )
    p.add_argument("--runs", type=int, default=None, help="generate N runs instead")
    p.add_argument("--seed", type=int, default=7)

    p = sub.add_parser(
        "gui", parents=[db_option], help="open the desktop application (the default)"
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="trace files to import")
    p.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                   help="open the built-in demo database")  # fmt: skip
    parser.add_argument(
        "--demo", action="store_true", help="open the app on the built-in demo database"
    )
    parser.add_argument("--self-test", action="store_true",
                        help="render the app once offscreen on demo data and exit")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # a frozen app's reader process starts here
    argv = list(sys.argv[1:] if argv is None else argv)
    # "tracedesk FILE..." opens the app on those files.
    positional = [i for i, a in enumerate(argv)
                  if not a.startswith("-") and (i == 0 or argv[i - 1] != "--db")]  # fmt: skip
    first = argv[positional[0]] if positional else None
    if first is not None and first not in (*COMMANDS, "gui", "check") and Path(first).exists():
        argv.insert(positional[0], "gui")
    args = _parser().parse_args(argv)
    if args.self_test:
        from tracedesk.ui.app import self_test

        return self_test()
    if args.command in (None, "gui"):
        if not _has_display():
            print("tracedesk: no display to open the app on (set DISPLAY, or use the"
                  " command line: tracedesk --help)", file=sys.stderr)  # fmt: skip
            return 1
        return gui_main(args.db, getattr(args, "files", []), args.demo)
    stdout = sys.stdout
    if stdout.isatty():  # trace text never drives the terminal
        sys.stdout = VisibleText(stdout)  # type: ignore[assignment]
    try:
        if args.command == "check":  # may need no database at all
            return cmd_check(args)
        with Store(args.db) as store:
            store.on_busy = _say_waiting
            return COMMANDS[args.command](store, args)
    except (UserError, TraceFormatError, StoreError, KeyError, RulesError, PricingError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        print(f"tracedesk: {visible(message)}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        path = Path(args.db or default_db_path())
        print(f"tracedesk: {path}: {database_problem(exc, path)}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"tracedesk: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout


def _say_waiting() -> None:
    print("tracedesk: waiting for another import to finish…", file=sys.stderr, flush=True)


class VisibleText:
    """A text stream that spells out control and bidi characters (see ``visible``)."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(visible(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _has_display() -> bool:
    """False on a Linux machine without X11 or Wayland, where Qt would abort."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def gui_entry() -> int:
    """The ``tracedesk-gui`` launcher: always the app, with the same options as ``gui``."""
    return main(["gui", *sys.argv[1:]])


def gui_main(db: Path | None = None, files: Sequence[Path] = (), demo: bool = False) -> int:
    from tracedesk.ui.app import run_app  # Qt is imported only when the GUI opens

    return run_app(db, files, demo)


def _progress(path: Path):
    if path.stat().st_size < LARGE_FILE:
        return None
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if percent != last[0]:
            last[0] = percent
            print(f"\r{path.name}: {percent}%", end="", file=sys.stderr, flush=True)
            if percent == 100:
                print(file=sys.stderr)

    return report


def _summary(result: ImportResult) -> str:
    if result.already_imported:
        return f"{result.path}: already imported, nothing to do"
    text = (
        f"{result.path}: {result.format}: {plural(result.runs, 'run')},"
        f" {plural(result.steps, 'step')} imported, {result.skipped} already present"
    )
    if result.bad_records:
        text += f", {plural(result.bad_records, 'bad record')} skipped"
    if result.warning_count:
        text += f", {plural(result.warning_count, 'warning')}"
    return text


def cmd_import(store: Store, args: argparse.Namespace) -> int:
    """Each file is its own transaction: a bad one is reported and the others go in."""
    failed = 0
    for path in args.files:
        try:
            result = import_file(
                store, path, format=args.format, skip_bad=args.skip_bad, progress=_progress(path)
            )
        except OSError as exc:
            failed += 1
            print(f"tracedesk: {path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            continue
        except TraceFormatError as exc:
            failed += 1
            print(f"tracedesk: {visible(str(exc))} (nothing imported from it)", file=sys.stderr)
            continue
        print(_summary(result))
        for warning in result.warnings[:SHOWN_WARNINGS]:
            print(f"  warning: {visible(warning)}", file=sys.stderr)
        if result.warning_count > SHOWN_WARNINGS:
            print(f"  … and {result.warning_count - SHOWN_WARNINGS} more warnings", file=sys.stderr)
    if failed and len(args.files) > 1:
        print(f"tracedesk: {failed} of {len(args.files)} files not imported", file=sys.stderr)
    return 1 if failed else 0


def cmd_runs(store: Store, args: argparse.Namespace) -> int:
    descending = args.sort in ("start_ns", "cost_pusd", "step_count")
    _analysed(store)
    runs = store.runs(f"{args.sort} {'DESC' if descending else 'ASC'}", limit=args.limit)
    # The fixed columns take about 85 characters; name and request share what is left.
    spare = max(shutil.get_terminal_size((160, 24)).columns - 85, 24)
    name_width, request_width = spare * 2 // 5, spare - spare * 2 // 5
    rows = [
        [
            run.id[:12], shorten(run.name, name_width), shorten(run.request, request_width),
            str(run.step_count),
            format_count(run.input_tokens + run.output_tokens), cost_text(run.cost, run.unpriced_steps),
            format_duration(run.duration_ns), run.status,
            incidents_text(run.incident_count, run.worst_severity),
        ]
        for run in runs
    ]  # fmt: skip
    headers = ["ID", "NAME", "REQUEST", "STEPS", "TOKENS", "COST", "DURATION", "STATUS",
               "INCIDENTS"]  # fmt: skip
    print(table(headers, rows, {3, 4, 5, 6}))
    print(plural(len(runs), "run"))
    return 0


def _build_index(store: Store) -> None:
    """Index the steps the full-text index is missing, saying so when it takes a while."""
    pending = store.search_index_state().pending
    if not pending:
        return
    loud = pending >= 50_000

    def report(done: int, total: int) -> None:
        if loud:
            print(f"\rbuilding the search index: {done * 100 // max(total, 1)}%", end="",
                  file=sys.stderr, flush=True)  # fmt: skip

    store.index_steps(report)
    if loud:
        print(file=sys.stderr)


def cmd_find(store: Store, args: argparse.Namespace) -> int:
    _analysed(store)
    try:
        node = parse(args.query)
    except SearchError as exc:
        raise UserError(f"bad query: {exc}") from None
    _build_index(store)
    if args.runs:
        runs = store.find_runs(node, args.limit)
        headers = ["run", "name", "session", "steps", "cost", "status", "incidents"]
        rows: list[list] = [
            [r.id, r.name, r.session_id or "", r.step_count, _usd(r.cost), str(r.status),
             r.incident_count]
            for r in runs
        ]  # fmt: skip
        noun = "run"
    else:
        steps = store.find_steps(node, args.limit)
        headers = ["run", "step", "kind", "name", "status", "cost"]
        rows = [[m.run_id, m.step_id, m.kind, m.name, m.status, _usd(m.cost)] for m in steps]
        noun = "step"
    if args.format == "json":
        print(orjson.dumps([dict(zip(headers, row, strict=True)) for row in rows],
                           option=orjson.OPT_INDENT_2).decode())  # fmt: skip
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
    else:
        shown = [[shorten(str(v), 40) if i in (1, 3) else str(v) for i, v in enumerate(row)]
                 for row in rows]  # fmt: skip
        if args.runs:
            shown = [[row[0][:12], *row[1:]] for row in shown]
        print(table([h.upper() for h in headers], shown, {4} if args.runs else {5}))
        more = " (the first ones; --limit for more)" if len(rows) == args.limit else ""
        print(f"{plural(len(rows), 'matching ' + noun)}{more}")
    return 0


def _usd(amount: Decimal | None) -> str:
    return "" if amount is None else format_usd(amount)


def cmd_sessions(store: Store, args: argparse.Namespace) -> int:
    _analysed(store)
    if args.session_id is None:
        sessions = store.sessions()
        rows = [[s.id, str(s.runs), str(s.steps), _usd(s.cost), str(s.incidents),
                 format_duration(None if s.first_ns is None or s.last_ns is None
                                 else s.last_ns - s.first_ns)]
                for s in sessions]  # fmt: skip
        print(table(["SESSION", "RUNS", "STEPS", "COST", "INCIDENTS", "SPAN"], rows, {1, 2, 3, 4}))
        print(plural(len(sessions), "session"))
        return 0
    session = store.session(args.session_id)
    if session is None:
        raise UserError(f"no session {args.session_id!r}")
    rows = [[r.id[:12], shorten(r.name, 40), time_text(r.start_ns), str(r.step_count),
             _usd(r.cost), incidents_text(r.incident_count, r.worst_severity)]
            for r in store.session_runs(session.id)]  # fmt: skip
    print(table(["RUN", "NAME", "STARTED", "STEPS", "COST", "INCIDENTS"], rows, {3, 4}))
    print(f"session {session.id}: {plural(session.runs, 'run')}, {_usd(session.cost) or 'no cost'},"
          f" {plural(session.incidents, 'incident')}")  # fmt: skip
    return 0


def time_text(ns: int | None) -> str:
    if ns is None:
        return ""
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def cmd_delete(store: Store, args: argparse.Namespace) -> int:
    run_ids = [store.find_run(prefix).id for prefix in args.run_ids]
    with store.transaction():
        deleted = store.delete_runs(run_ids)
    print(f"deleted {plural(deleted, 'run')}")
    return 0


def cmd_search_index(store: Store, args: argparse.Namespace) -> int:
    if args.action in ("on", "off"):
        store.set_search_index(args.action == "on")
    if args.action == "build":
        _build_index(store)
    state = store.search_index_state()
    if not state.on:
        print("search index: off (searches scan every step with LIKE)")
    else:
        pending = (
            f", {plural(state.pending, 'step')} to index on the next search"
            if state.pending
            else ""
        )
        print(f"search index: on{pending}")
    return 0


def cmd_show(store: Store, args: argparse.Namespace) -> int:
    _analysed(store)
    run = store.find_run(args.run_id)
    print(f"{shorten(run.name, 200)}  [{visible(run.id)}]  {run.status}")
    if run.request:
        print(f"request: {shorten(run.request, 100)}")
    print(
        f"{plural(run.step_count, 'step')}, {format_count(run.input_tokens)} input +"
        f" {format_count(run.output_tokens)} output tokens,"
        f" {cost_text(run.cost, run.unpriced_steps)}, {format_duration(run.duration_ns)}"
    )
    incidents = store.incidents(run.id)
    steps = store.steps(run.id, payloads=False)
    flagged = {s for i in incidents for s in i.step_ids}
    for depth, step in walk_tree(steps):
        tokens = ""
        if step.input_tokens is not None or step.output_tokens is not None:
            tokens = f"  {step.input_tokens or 0}→{step.output_tokens or 0} tok"
        cost = f"  {format_usd(step.cost)}" if step.cost else ""
        error = f"  ERROR: {shorten(step.error, 60)}" if step.status == Status.ERROR else ""
        loop = "  ⟳" if step.id in flagged else ""
        print(
            f"{'  ' * depth}{step.kind:<9} {shorten(step.name, 120)}  {format_duration(step.duration_ns)}"
            f"{tokens}{cost}{error}{loop}"
        )
    names = {s.id: f"{s.name} [{s.id}]" for s in steps}
    for incident in incidents:
        print(visible("\n".join(incident_lines(incident, names))))
    if len(incidents) > 1:
        print(f"wasted in all: {waste_text(run)}")
    return 0


def _analysed(store: Store) -> None:
    """Bring stored costs and incidents up to date with the current prices and rules."""
    refresh_costs(store, _pricing())
    refresh_incidents(store, Rules.load())


def _pricing() -> Pricing:
    try:
        return Pricing.load()
    except PricingError as exc:
        raise UserError(str(exc)) from None


def _date(text: str) -> int:
    """An ISO date or date-time (naive means UTC) as ns since the epoch."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1e9)


def _chosen_runs(store: Store, args: argparse.Namespace) -> list[str] | None:
    """The runs named, or of a request, or in a time range; None means all runs."""
    if not (args.run_ids or args.request or args.since or args.until):
        return None
    runs = [store.find_run(r) for r in args.run_ids] if args.run_ids else store.runs("start_ns ASC")
    if args.request:
        anchor = store.find_run(args.request)
        key = request_fingerprint(anchor.request, anchor.name)
        runs = [r for r in runs if request_fingerprint(r.request, r.name) == key]
    if args.since:
        runs = [r for r in runs if (r.start_ns or 0) >= args.since]
    if args.until:
        runs = [r for r in runs if (r.start_ns or 0) < args.until]
    if not runs:
        raise UserError("no runs match the given selection")
    return [r.id for r in runs]


def cmd_costs(store: Store, args: argparse.Namespace) -> int:
    pricing = _pricing()
    refresh_costs(store, pricing)
    # The table shows no cost parts, sources or waste: they are not summed for it.
    summary = summarize(store, pricing, _chosen_runs(store, args), by=args.by,
                        detail=args.format != "table")  # fmt: skip
    if args.format == "table":
        rows = [
            [shorten(f"{r.label} [{r.key[:12]}]" if args.by == "run" else r.label or r.key, 60),
             str(r.steps), format_count(r.input_tokens),
             format_count(r.output_tokens), cost_text(r.cost, r.unpriced_steps),
             str(r.unpriced_steps) if r.unpriced_steps else ""]
            for r in [*summary.rows, summary.total]
        ]  # fmt: skip
        headers = [args.by.upper(), "STEPS", "IN TOK", "OUT TOK", "COST", "UNPRICED"]
        text = table(headers, rows, {1, 2, 3, 4, 5}) + "\n"
    else:
        text = COST_WRITERS[args.format](summary)
        if args.format == "md":
            text = visible(text)
    if args.output:
        write_text_atomically(args.output, text)
        print(f"{args.output}: cost summary of {plural(len(summary.runs), 'run')} by {args.by}")
    else:
        sys.stdout.write(text)
    for model, count in sorted(summary.unknown_models.items()):
        print(f"warning: no price for model {model!r} ({count} steps not costed)", file=sys.stderr)
    return 0


def _check_runs(args: argparse.Namespace, rules: Rules, pricing: Pricing, scratch: Path):
    """(run, incidents) for every target: files go through a scratch database."""
    files = [Path(t) for t in args.targets if Path(t).is_file()]
    run_ids = [t for t in args.targets if not Path(t).is_file()]
    if files:
        with Store(scratch / "check.db", scratch=True) as store:
            for path in files:  # the import finds the incidents with these rules
                import_file(store, path, pricing=pricing, rules=rules)
            by_run = defaultdict(list)  # in one query, not one a run
            for incident in store.incidents():
                by_run[incident.run_id].append(incident)
            for run in store.runs("start_ns ASC"):
                yield run, by_run.get(run.id, [])
    if run_ids:
        with Store(args.db) as store:
            refresh_costs(store, pricing)
            for run_id in run_ids:
                run = store.find_run(run_id)
                yield run, detect(run, store.steps(run.id), rules)


def cmd_check(args: argparse.Namespace) -> int:
    overrides = {}
    if args.max_steps is not None:
        overrides["runaway__max_steps"] = args.max_steps
    if args.max_cost is not None:
        overrides["runaway__max_cost_usd"] = args.max_cost
    rules = Rules.load(user_file=args.rules, **overrides)
    with tempfile.TemporaryDirectory() as scratch:
        results = list(_check_runs(args, rules, _pricing(), Path(scratch)))
    failed = [i for _, found in results for i in failing(found, args.severity)]
    report = CHECK_REPORTS[args.format](results, args.severity)
    if args.format != "json":  # text reports spell out what would act (JSON escapes itself)
        report = visible(report)
    if args.output:
        write_text_atomically(args.output, report)
    else:
        sys.stdout.write(report)
    print(
        f"{plural(len(results), 'run')} checked,"
        f" {plural(sum(len(found) for _, found in results), 'incident')},"
        f" {len(failed)} at or above {args.severity}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def cmd_diff(store: Store, args: argparse.Namespace) -> int:
    _analysed(store)
    report = DIFF_WRITERS[args.format](compare_runs(store, args.run_a, args.run_b))
    sys.stdout.write(report if args.format == "json" else visible(report))
    return 0


_PRICE_LABELS = {
    "input": "input", "cached_input": "cache read", "cache_write": "cache write",
    "cache_write_1h": "cache write 1h", "output": "output", "reasoning": "reasoning",
    "per_request": "per request",
}  # fmt: skip


def _price_rows(price: ModelPrice) -> list[tuple[str, str]]:
    """A model price as (usage type, price) rows, tiers after the base prices."""
    rows = [(_PRICE_LABELS[key], f"${getattr(price, key)}/M") for key in _PRICE_LABELS
            if key != "per_request" and getattr(price, key) is not None]  # fmt: skip
    if price.per_request is not None:
        rows.append(("per request", f"${price.per_request}"))
    for tier in price.tiers:
        changed = ", ".join(f"{_PRICE_LABELS[key]} ${value}/M" for key, value in tier.prices)
        rows.append((f"above {tier.above:,} input tokens", changed))
    return rows


def cmd_pricing(store: Store, args: argparse.Namespace) -> int:
    pricing = _pricing()
    if args.model:
        price = pricing.resolve(args.model, args.provider, args.date)
        if price is None:
            print(f"no price for model {args.model!r}"
                  + (f" (provider {args.provider!r})" if args.provider else ""), file=sys.stderr)  # fmt: skip
            return 1
        when = "now" if args.date is None else _iso_day(args.date)
        print(f"{args.model}: priced as {price.label} ({when})")
        print(f"source: {price.source or 'user pricing.json'}")
        print(f"in force since: {price.as_of or 'first listed (no earlier price known)'}")
        print(table(["USAGE", "USD"], _price_rows(price)))
        return 0
    refresh_costs(store, pricing)  # costs, and so the unpriced steps, as of these prices
    missing = store.unpriced_models()
    if args.check:
        for model, count in sorted(missing.items()):
            print(f"{model}\t{plural(count, 'step')}")
        print(f"{plural(len(missing), 'model')} without a price", file=sys.stderr)
        return 1 if missing else 0
    used = store.conn.execute(
        "SELECT model, provider, count(*), max(start_ns) FROM steps WHERE model IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    rows = []
    for model, provider, _, last in used:
        price = pricing.resolve(model, provider, last)
        if price is not None:
            rows.append([model, price.label, str(price.input), str(price.output),
                         "-" if price.cached_input is None else str(price.cached_input),
                         "-" if price.cache_write is None else str(price.cache_write),
                         "tiers" if price.tiers else "", price.source or "",
                         price.as_of or ""])  # fmt: skip
    if args.all:
        rows += [[p.name, p.label, str(p.input), str(p.output), str(p.cached_input or "-"),
                  str(p.cache_write or "-"), "tiers" if p.tiers else "", p.source or "",
                  p.as_of or ""] for p in pricing.models.values()]  # fmt: skip
    print("USD per 1M tokens (at each model's latest step); user overrides:", user_pricing_path())
    print(table(["MODEL", "PRICED AS", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE", "",
                 "SOURCE", "SINCE"], rows, {2, 3, 4, 5}))  # fmt: skip
    for model, count in sorted(missing.items()):
        print(f"missing: {model} ({count} steps) has no price", file=sys.stderr)
    return 0


def _iso_day(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).date().isoformat()


def cmd_export(store: Store, args: argparse.Namespace) -> int:
    with atomic_output(args.output) as out:
        count = write_native(store, args.run_ids, out)
    print(f"{args.output}: {plural(count, 'run')} written")
    return 0


def cmd_serve(store: Store, args: argparse.Namespace) -> int:
    """The OTLP/HTTP receiver in the foreground: one line per run analysed, Ctrl+C (or
    SIGTERM) stops it after writing every span it acknowledged."""
    import signal
    import time

    from tracedesk.core.live import QUIET_S, LiveServer, Written
    from tracedesk.core.receiver import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        PortTaken,
        free_port,
        is_loopback,
    )

    host = args.host or DEFAULT_HOST
    port = DEFAULT_PORT if args.port is None else args.port
    pricing, rules = _pricing(), Rules.load()

    def settled(writer: Store, written: Written) -> None:
        for run_id in sorted(written.runs):
            run = writer.get_run(run_id)
            if run is not None:
                found = f", {plural(run.incident_count, 'incident')}" if run.incident_count else ""
                print(f"run {run_id[:12]} {visible(shorten(run.name, 40))}:"
                      f" {plural(run.step_count, 'step')},"
                      f" {format_count(run.input_tokens + run.output_tokens)} tokens,"
                      f" {format_usd(run.cost)}{found}", flush=True)  # fmt: skip

    def listen(on_port: int) -> LiveServer:
        return LiveServer(store.path, host, on_port, pricing, rules,
                          QUIET_S if args.quiet_seconds is None else args.quiet_seconds,
                          on_settled=settled)  # fmt: skip

    try:
        try:
            server = listen(port)
        except PortTaken as exc:
            other = free_port(host, port)
            if args.port is not None:
                raise UserError(f"{exc} (another collector, or another tracedesk?);"
                                f" port {other} is free: --port {other}") from None  # fmt: skip
            print(f"tracedesk: {exc} (another collector, or another tracedesk?);"
                  f" listening on port {other} instead", file=sys.stderr)  # fmt: skip
            server = listen(other)
    except OSError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    if not is_loopback(host):
        print(f"tracedesk: warning: listening on {host}, not only this machine: anyone who can"
              " reach it can write traces into this database", file=sys.stderr)  # fmt: skip

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    # Also when started with SIGINT ignored (a background job of a script inherits that):
    # `kill -INT` then still stops it cleanly.
    signal.signal(signal.SIGINT, interrupt)
    try:
        server.start()
        print(f"Listening for OTLP/HTTP traces on {server.url} (Langfuse SDK: base URL"
              f" http://{server.address}), writing to {store.path}; Ctrl+C stops", flush=True)  # fmt: skip
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    print("Stopping: writing the spans received…", file=sys.stderr, flush=True)
    server.stop()
    stats, result = server.receiver.stats, server.ingest.result
    print(f"tracedesk: {plural(stats.spans, 'span')} received"
          f" ({plural(result.steps, 'step')} new, {result.skipped} already stored,"
          f" {stats.rejected_spans} rejected), {plural(stats.errors, 'request')} refused,"
          f" {plural(len(server.ingest.runs_seen), 'run')}", file=sys.stderr)  # fmt: skip
    for error in server.errors[:SHOWN_WARNINGS]:
        print(f"tracedesk: could not write: {error}", file=sys.stderr)
    return 1 if server.errors else 0


def fill_demo(store: Store, runs: int | None = None, seed: int = 7) -> ImportResult:
    """Import the shipped demo traces, or ``runs`` freshly generated ones."""
    if runs is None:
        with as_file(demo_traces()) as path:
            return import_file(store, path)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"demo-{runs}-{seed}.tracedesk.jsonl"
        with path.open("wb") as out:
            out.writelines(native_lines(generate(runs, seed)))
        return import_file(store, path)


def cmd_demo(store: Store, args: argparse.Namespace) -> int:
    print(_summary(fill_demo(store, args.runs, args.seed)))
    return 0


COMMANDS = {
    "find": cmd_find,
    "sessions": cmd_sessions,
    "delete": cmd_delete,
    "search-index": cmd_search_index,
    "costs": cmd_costs,
    "pricing": cmd_pricing,
    "import": cmd_import,
    "runs": cmd_runs,
    "show": cmd_show,
    "export": cmd_export,
    "demo": cmd_demo,
    "diff": cmd_diff,
    "serve": cmd_serve,
}
