"""Writing data out of the store: runs as tracedesk JSON Lines (lossless), and cost
summaries as CSV, JSON and Markdown."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree

import orjson

from tracedesk.core.analysis.compare import Comparison
from tracedesk.core.importers.native import FORMAT_VERSION, NAME
from tracedesk.core.model import RUN_DERIVED_FIELDS, Incident, Run, Step, severity_rank
from tracedesk.core.store import Store
from tracedesk.core.store.queries import Waste
from tracedesk.core.summary import COST_PARTS, CostRow, CostSummary
from tracedesk.core.text import format_duration, table

# Derived by the store on import, so not written out.
_RUN_SKIP = frozenset(RUN_DERIVED_FIELDS)
_STEP_SKIP = frozenset({"depth", "cost", "cost_source", "cost_parts"})


def _record(kind: str, obj: Run | Step, skip: frozenset[str]) -> dict[str, Any]:
    record: dict[str, Any] = {"type": kind}
    for name in obj.__dataclass_fields__:
        value = getattr(obj, name)
        if name in skip or value is None or value == {} or value == "":
            continue
        record[name] = str(value) if name == "reported_cost" else value
    return record


def native_lines(runs: Iterable[tuple[Run, Iterable[Step]]]) -> Iterator[bytes]:
    """The JSON Lines of runs and their steps, header first."""
    yield orjson.dumps({"type": "header", "format": NAME, "version": FORMAT_VERSION}) + b"\n"
    for run, steps in runs:
        yield orjson.dumps(_record("run", run, _RUN_SKIP)) + b"\n"
        for step in steps:
            yield orjson.dumps(_record("step", step, _STEP_SKIP)) + b"\n"


def write_native(store: Store, run_ids: Iterable[str], out: IO[bytes]) -> int:
    """Write runs (with all their steps) as tracedesk JSONL; returns the number of runs."""
    runs = [store.find_run(run_id) for run_id in run_ids]
    out.writelines(native_lines((run, store.iter_steps(run.id)) for run in runs))
    return len(runs)


# -- cost summaries ------------------------------------------------------------------

COST_FORMATS = ("csv", "json", "md")
_COST_COLUMNS = (
    "key",
    "label",
    "steps",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
    "unpriced_steps",
    *(f"{part}_cost_usd" for part in COST_PARTS),
    "wasted_cost_usd",
    "price_sources",
    "price_dates",
)
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def format_usd(amount: Decimal | None) -> str:
    """Money for people: cents above a dollar, more digits for the small sums of one step."""
    if amount is None:
        return "-"
    if amount == 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount >= Decimal("0.01"):
        return f"${amount:.4f}"
    return f"${amount:.6f}"


def cost_text(amount: Decimal | None, unpriced_steps: int = 0) -> str:
    """``format_usd`` that says when steps without a price are left out of the sum."""
    if unpriced_steps and not amount:
        return "no price"
    return format_usd(amount) + ("+?" if unpriced_steps else "")


def _cells(row: CostRow) -> list[Any]:
    return [
        row.key,
        row.label,
        row.steps,
        row.input_tokens,
        row.output_tokens,
        row.cached_input_tokens,
        row.reasoning_tokens,
        row.cache_creation_tokens,
        row.cache_write_1h_tokens,
        row.cost,
        row.unpriced_steps,
        *(row.parts.get(part, Decimal(0)) for part in COST_PARTS),
        row.wasted_cost,
        "; ".join(sorted(row.price_sources)),
        "; ".join(sorted(row.price_dates)),
    ]


def csv_safe(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def cost_summary_csv(summary: CostSummary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COST_COLUMNS)
    for row in [*summary.rows, summary.total]:
        writer.writerow([csv_safe(c) if isinstance(c, str) else c for c in _cells(row)])
    return out.getvalue()


def cost_summary_json(summary: CostSummary) -> str:
    def record(row: CostRow) -> dict[str, Any]:
        values = dict(zip(_COST_COLUMNS, _cells(row), strict=True))
        for name, value in values.items():
            if isinstance(value, Decimal):
                values[name] = str(value)  # exact: a string, never a float
        return values

    document = {
        "group_by": summary.by,
        "runs": list(summary.runs),
        "rows": [record(row) for row in summary.rows],
        "total": record(summary.total),
        "unknown_models": summary.unknown_models,
        "wasted": _wasted(summary.waste),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def _wasted(waste: Waste) -> dict[str, Any]:
    """What the runs' loop incidents wasted, each wasted step counted once."""
    return {
        "incidents": waste.incidents,
        "tokens": waste.tokens,
        "cost_usd": str(waste.cost),
        "seconds": round(waste.ns / 1e9, 3),
        "steps_without_price": waste.unpriced,
    }


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _writes(row: CostRow) -> str:
    """Cache writes, with the 1-hour ones among them when there are any."""
    if row.cache_write_1h_tokens:
        return f"{row.cache_creation_tokens} ({row.cache_write_1h_tokens} 1h)"
    return str(row.cache_creation_tokens)


def cost_summary_markdown(summary: CostSummary) -> str:
    lines = [
        f"# Cost summary by {summary.by}",
        "",
        f"{len(summary.runs)} runs, {summary.total.steps} steps, "
        f"total {format_usd(summary.total.cost)}.",
        "",
        "Wasted in {incidents} loop incidents: {tokens} tokens, {cost_usd} USD, {seconds} s.".format(
            **_wasted(summary.waste)
        ),
        "",
        f"| {summary.by} | steps | input tokens | output tokens | cached | reasoning"
        " | cache writes | cost (USD) | wasted (USD) | cost by part | price source (date) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in [*summary.rows, summary.total]:
        bold = "**" if row is summary.total else ""
        parts = ", ".join(f"{part} {row.parts[part]}" for part in COST_PARTS if part in row.parts)
        sources = "; ".join(sorted(row.price_sources))
        if row.price_dates:
            sources += f" ({', '.join(sorted(row.price_dates))})"
        lines.append(
            f"| {bold}{_md_cell(row.label or row.key)}{bold} | {row.steps} | {row.input_tokens} |"
            f" {row.output_tokens} | {row.cached_input_tokens} | {row.reasoning_tokens} |"
            f" {_writes(row)} | {bold}{row.cost}{bold} | {row.wasted_cost} |"
            f" {_md_cell(parts)} | {_md_cell(sources)} |"
        )
    if summary.unknown_models:
        lines += ["", "Steps not priced (no price for the model):", ""]
        lines += [f"- `{model}`: {n} steps" for model, n in sorted(summary.unknown_models.items())]
    return "\n".join(lines) + "\n"


COST_WRITERS = {"csv": cost_summary_csv, "json": cost_summary_json, "md": cost_summary_markdown}


@contextmanager
def atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A file written next to the target and renamed over it at the end, so a failure
    never leaves half a file, nor a temporary one. A symlink's target is written (the link
    stays), an existing file keeps its permissions, and a special file (``/dev/stdout``, a
    pipe) is written to directly."""
    target = Path(path).resolve() if Path(path).is_symlink() else Path(path)
    if target.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    if target.exists() and not target.is_file():
        with target.open("wb") as special:
            yield special
        return
    # Not a `with` block: the file must outlive it, to be renamed or removed below.
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115
        "wb", dir=target.parent, prefix=f".{target.name}.", delete=False
    )
    try:
        with tmp:
            yield tmp
        if target.exists():
            os.chmod(tmp.name, target.stat().st_mode & 0o7777)
        else:  # as a plain open() would have created it
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp.name, 0o666 & ~umask)
        os.replace(tmp.name, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp.name)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    with atomic_output(path) as out:
        out.write(text.encode("utf-8"))


# -- loop check reports ---------------------------------------------------------------


def waste_text(wasted: Incident | Run) -> str:
    """'2,100 tokens, $0.0042, 3.20 s' — what an incident or a run wasted."""
    cost = cost_text(wasted.wasted_cost, wasted.wasted_unpriced)
    return f"{wasted.wasted_tokens:,} tokens, {cost}, {format_duration(wasted.wasted_ns)}"


def incident_lines(incident: Incident, names: dict[str, str] | None = None) -> list[str]:
    """An incident for people: headline, evidence, steps and waste (names: step labels)."""
    names = names or {}
    first, last = incident.first_step or "", incident.last_step or ""
    first, last = names.get(first, first), names.get(last, last)
    steps = f"{first} … {last}" if first != last else first
    lines = [f"{incident.severity}: {incident.kind.replace('_', ' ')}: {incident.message}"]
    lines += [f"  also {e.kind.replace('_', ' ')} ({e.severity}): {e.message}"
              for e in incident.evidence]  # fmt: skip
    lines.append(f"  steps {steps}; wasted {len(incident.wasted_step_ids)} steps, "
                 + waste_text(incident))  # fmt: skip
    return lines


CheckResults = Sequence[tuple[Run, Sequence[Incident]]]


def failing(incidents: Iterable[Incident], threshold: str) -> list[Incident]:
    """The incidents at or above a severity: what makes ``check`` fail."""
    return [i for i in incidents if severity_rank(i.severity) >= severity_rank(threshold)]


def check_text(results: CheckResults, threshold: str = "warning") -> str:
    lines = []
    for run, incidents in results:
        mark = "FAIL" if failing(incidents, threshold) else "ok"
        lines.append(f"{mark:4}  {run.name or run.id}  [{run.id}]  {run.step_count} steps")
        lines += ["      " + line for i in incidents for line in incident_lines(i)]
    return "\n".join(lines) + "\n"


def _incident_record(i: Incident) -> dict[str, Any]:
    return {
        "kind": i.kind, "severity": i.severity, "run_id": i.run_id, "message": i.message,
        "evidence": [{"kind": e.kind, "severity": e.severity, "message": e.message}
                     for e in i.evidence],
        "first_step": i.first_step, "last_step": i.last_step, "step_ids": i.step_ids,
        "wasted_step_ids": i.wasted_step_ids, "wasted_tokens": i.wasted_tokens,
        "wasted_cost_usd": str(i.wasted_cost), "wasted_seconds": i.wasted_ns / 1e9,
        "wasted_steps_without_price": i.wasted_unpriced,
    }  # fmt: skip


def check_json(results: CheckResults, threshold: str = "warning") -> str:
    document = [
        {"run_id": run.id, "name": run.name, "steps": run.step_count,
         "passed": not failing(incidents, threshold),
         "wasted_tokens": sum(i.wasted_tokens for i in incidents),
         "wasted_cost_usd": str(sum((i.wasted_cost for i in incidents), Decimal(0))),
         "wasted_seconds": sum(i.wasted_ns for i in incidents) / 1e9,
         "incidents": [_incident_record(i) for i in incidents]}
        for run, incidents in results
    ]  # fmt: skip
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def check_junit(results: CheckResults, threshold: str = "warning") -> str:
    """JUnit XML: one test case per run, one failure per incident at or above the
    threshold, for CI dashboards."""
    failed_runs = sum(bool(failing(incidents, threshold)) for _, incidents in results)
    suite = ElementTree.Element("testsuite", name="tracedesk check", tests=str(len(results)),
                                failures=str(failed_runs))  # fmt: skip
    for run, incidents in results:
        case = ElementTree.SubElement(suite, "testcase", classname="tracedesk.runs",
                                      name=f"{run.name or 'run'} [{run.id}]")  # fmt: skip
        for incident in failing(incidents, threshold):
            failure = ElementTree.SubElement(case, "failure", message=incident.message,
                                             type=f"{incident.severity}:{incident.kind}")  # fmt: skip
            failure.text = "\n".join(incident_lines(incident))
    root = ElementTree.Element("testsuites")
    root.append(suite)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


CHECK_REPORTS = {"text": check_text, "json": check_json, "junit": check_junit}


# -- run comparisons ------------------------------------------------------------------

MATCH_MARKS = {"matched": "=", "changed": "~", "moved": "↕", "only_a": "-", "only_b": "+"}
MATCH_LEGEND = {"matched": "same step", "changed": "changed", "moved": "moved",
                "only_a": "only in A", "only_b": "only in B"}  # fmt: skip


def step_label(step: Step | None) -> str:
    if step is None:
        return ""
    name = step.tool_name or step.name
    detail = step.model if step.kind == "llm" and step.model and step.model not in name else ""
    if step.tool_args is not None:
        detail = orjson.dumps(step.tool_args, option=orjson.OPT_SORT_KEYS, default=str).decode()
    text = f"{step.kind} {name}" + (f" {detail}" if detail else "")
    return text if len(text) <= 60 else text[:59] + "…"


def _delta_lines(c: Comparison) -> list[tuple[str, str, str, str]]:
    a, b = c.totals_a, c.totals_b

    def signed(value: Any, text: str) -> str:
        return ("+" if value > 0 else "") + text

    return [
        ("steps", str(a.steps), str(b.steps), signed(b.steps - a.steps, str(b.steps - a.steps))),
        ("tokens", str(a.tokens), str(b.tokens), signed(b.tokens - a.tokens, str(b.tokens - a.tokens))),
        ("cost", format_usd(a.cost), format_usd(b.cost),
         ("-" if b.cost < a.cost else "+") + format_usd(abs(b.cost - a.cost))),
        ("duration", format_duration(a.duration_ns), format_duration(b.duration_ns),
         ("-" if b.duration_ns < a.duration_ns else "+") + format_duration(abs(b.duration_ns - a.duration_ns))),
        ("incidents", str(a.incidents), str(b.incidents), signed(b.incidents - a.incidents, str(b.incidents - a.incidents))),
    ]  # fmt: skip


def _divergence_text(c: Comparison) -> str:
    pair = c.first_divergence
    if pair is None:
        return "the runs took the same path"
    return f"{pair.match.replace('_', ' ')} at depth {pair.depth}: A {step_label(pair.a) or '(nothing)'} | B {step_label(pair.b) or '(nothing)'}"


def diff_text(c: Comparison) -> str:
    lines = [f"A: {c.run_a.name} [{c.run_a.id}]", f"B: {c.run_b.name} [{c.run_b.id}]", ""]
    for pair in c.rows():
        marker = "◆" if pair is c.first_divergence else MATCH_MARKS[pair.match]
        indent = "  " * pair.depth
        lines.append(
            f"{marker} {indent}{step_label(pair.a):<{62 - len(indent)}} | {indent}{step_label(pair.b)}"
        )
    legend = "  ".join(f"{MATCH_MARKS[m]} {text}" for m, text in MATCH_LEGEND.items())
    lines += ["", f"{legend}  ◆ first divergence", f"first divergence: {_divergence_text(c)}", ""]
    lines.append(table(["", "A", "B", "B - A"], _delta_lines(c), {1, 2, 3}))
    return "\n".join(lines) + "\n"


def diff_json(c: Comparison) -> str:
    rows = c.rows()
    document = {
        "a": {"run_id": c.run_a.id, "name": c.run_a.name},
        "b": {"run_id": c.run_b.id, "name": c.run_b.name},
        "pairs": [
            {
                "a": p.a.id if p.a else None,
                "b": p.b.id if p.b else None,
                "match": str(p.match),
                "depth": p.depth,
            }
            for p in rows
        ],
        "first_divergence": None if c.first_divergence is None else rows.index(c.first_divergence),
        "counts": c.counts(),
        "totals": {
            side: {
                "steps": t.steps,
                "tokens": t.tokens,
                "cost_usd": str(t.cost),
                "duration_ns": t.duration_ns,
                "incidents": t.incidents,
            }
            for side, t in (("a", c.totals_a), ("b", c.totals_b))
        },
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def diff_markdown(c: Comparison) -> str:
    lines = [f"# {c.run_a.name} vs {c.run_b.name}", "",
             f"- A: `{c.run_a.id}`", f"- B: `{c.run_b.id}`",
             f"- first divergence: {_md_cell(_divergence_text(c))}", "",
             "| | A | B | B − A |", "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {name} | {a} | {b} | {d} |" for name, a, b, d in _delta_lines(c)]
    lines += ["", "| | A | B |", "|---|---|---|"]
    for pair in c.rows():
        marker = "◆" if pair is c.first_divergence else MATCH_MARKS[pair.match]
        pad = "&nbsp;&nbsp;" * pair.depth
        lines.append(
            f"| {marker} | {pad}{_md_cell(step_label(pair.a))} | {pad}{_md_cell(step_label(pair.b))} |"
        )
    return "\n".join(lines) + "\n"


DIFF_WRITERS = {"text": diff_text, "json": diff_json, "md": diff_markdown}
