"""Compare two runs of the same request: align their steps, find where they diverged,
and what each path cost.

Steps are aligned by signature (kind + tool and normalised arguments, or kind + model, or
kind + name), level by level down the tree: the children of two aligned steps are aligned
with each other. Within a level a Myers diff finds the matches; leftover steps with the
same kind and name pair up as *changed*; a step left over on both sides with the same
signature elsewhere is *moved*. Parallel calls (overlapping in time) are put in a
canonical order first, so a different finishing order is no difference.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tracedesk.core.analysis.loops import canonical
from tracedesk.core.model import Run, Step, StepKind
from tracedesk.core.model import Status as StepStatus
from tracedesk.core.tree import children_by_parent

MAX_EDIT_DISTANCE = 1500  # beyond this a level is aligned by a cheaper, coarser method
_VOLATILE = frozenset({"timestamp", "ts", "time", "request_id", "requestid", "nonce", "trace_id",
                       "span_id", "uuid", "call_id", "tool_call_id", "id"})  # fmt: skip
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{16,}\b")


class Match(StrEnum):
    MATCHED = "matched"
    CHANGED = "changed"  # same kind and name, other arguments or model
    MOVED = "moved"  # the same step, elsewhere in the other run
    ONLY_A = "only_a"
    ONLY_B = "only_b"


def request_fingerprint(request: str | None, name: str = "") -> str:
    """Runs with the same fingerprint ran the same request (white space, case, ids ignored)."""
    text = " ".join((request or "").split()).lower()
    text = _HEX.sub("<id>", _UUID.sub("<id>", text))
    return hashlib.sha1(f"{name.strip().lower()}\n{text}".encode()).hexdigest()[:12]


def signature(step: Step) -> str:
    if step.kind in (StepKind.TOOL, StepKind.RETRIEVER):
        args = step.tool_args if step.tool_args is not None else step.input
        return f"{step.kind}:{step.tool_name or step.name}:{canonical(args, _VOLATILE)}"
    if step.kind in (StepKind.LLM, StepKind.EMBEDDING):
        return f"{step.kind}:{step.model or step.name}"
    return f"{step.kind}:{step.name}"


def loose_signature(step: Step) -> str:
    """What stays the same when a step changed: its kind and name (or tool)."""
    if step.kind in (StepKind.LLM, StepKind.EMBEDDING):
        return str(step.kind)
    return f"{step.kind}:{step.tool_name or step.name}"


@dataclass
class Pair:
    """One row of the alignment: a step of A, of B, or both."""

    a: Step | None
    b: Step | None
    match: Match
    depth: int
    children: list[Pair] = field(default_factory=list)


@dataclass
class Totals:
    steps: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    duration_ns: int = 0
    incidents: int = 0


@dataclass
class Comparison:
    run_a: Run
    run_b: Run
    pairs: list[Pair]  # the aligned roots; each Pair holds its aligned children
    totals_a: Totals
    totals_b: Totals
    first_divergence: Pair | None

    def rows(self) -> list[Pair]:
        """Every pair in tree order (depth first)."""
        out: list[Pair] = []
        stack = list(reversed(self.pairs))
        while stack:
            pair = stack.pop()
            out.append(pair)
            stack.extend(reversed(pair.children))
        return out

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(Match, 0)
        for pair in self.rows():
            counts[pair.match] += 1
        return {str(k): v for k, v in counts.items()}


# -- sequence alignment ------------------------------------------------------------------


def myers(
    a: Sequence[Any], b: Sequence[Any], max_d: int = MAX_EDIT_DISTANCE
) -> list[tuple[str, int, int]] | None:
    """An edit script from a to b: ('equal', i, j), ('delete', i, -1), ('insert', -1, j).

    Myers' O((N+M)D) algorithm; None when more than ``max_d`` edits are needed.
    """
    n, m = len(a), len(b)
    limit = min(max_d, n + m)
    offset = limit + 1
    v = [0] * (2 * limit + 3)
    trace: list[list[int]] = []
    for d in range(limit + 1):
        trace.append(v[offset - d - 1 : offset + d + 2])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[offset + k - 1] < v[offset + k + 1]):
                x = v[offset + k + 1]
            else:
                x = v[offset + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[offset + k] = x
            if x >= n and y >= m:
                return _backtrack(trace, d, n, m)
    return None


def _backtrack(trace: list[list[int]], d_end: int, n: int, m: int) -> list[tuple[str, int, int]]:
    script: list[tuple[str, int, int]] = []
    x, y = n, m
    for d in range(d_end, -1, -1):
        saved = trace[d]  # v before step d, covering diagonals -d-1 .. d+1

        def at(k: int, saved=saved, d=d) -> int:
            return saved[k + d + 1]

        k = x - y
        if d == 0:
            prev_k = 0
            prev_x = 0
        elif k == -d or (k != d and at(k - 1) < at(k + 1)):
            prev_k = k + 1
            prev_x = at(prev_k)
        else:
            prev_k = k - 1
            prev_x = at(prev_k)
        prev_y = prev_x - prev_k
        while x > prev_x and y > prev_y:
            x -= 1
            y -= 1
            script.append(("equal", x, y))
        if d > 0:
            if x == prev_x:
                script.append(("insert", -1, prev_y))
            else:
                script.append(("delete", prev_x, -1))
        x, y = prev_x, prev_y
    script.reverse()
    return script


def _coarse_script(a: Sequence[Any], b: Sequence[Any]) -> list[tuple[str, int, int]]:
    """For levels too different for Myers within bounds: difflib's quick junk-tolerant match."""
    import difflib

    script: list[tuple[str, int, int]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        if tag == "equal":
            script.extend(("equal", i1 + t, j1 + t) for t in range(i2 - i1))
        else:
            script.extend(("delete", i, -1) for i in range(i1, i2))
            script.extend(("insert", -1, j) for j in range(j1, j2))
    return script


# -- tree alignment ----------------------------------------------------------------------


def _children(steps: Sequence[Step]) -> dict[str | None, list[Step]]:
    children = children_by_parent(steps)
    for siblings in children.values():
        _canonical_order(siblings)
    return children


def _canonical_order(siblings: list[Step]) -> None:
    """Sort by start; within a group of overlapping (parallel) steps, by signature."""
    siblings.sort(key=lambda s: (s.start_ns is None, s.start_ns or 0))
    ordered: list[Step] = []
    group: list[Step] = []
    group_end = None
    for step in siblings:
        if (
            group
            and step.start_ns is not None
            and group_end is not None
            and step.start_ns < group_end
        ):
            group.append(step)
            group_end = max(group_end, step.end_ns or step.start_ns)
            continue
        ordered.extend(sorted(group, key=signature))
        group = [step]
        group_end = step.end_ns if step.end_ns is not None else step.start_ns
    ordered.extend(sorted(group, key=signature))
    siblings[:] = ordered


def _align_level(a: list[Step], b: list[Step]) -> list[tuple[Step | None, Step | None, Match]]:
    sig_a, sig_b = [signature(s) for s in a], [signature(s) for s in b]
    script = myers(sig_a, sig_b)
    if script is None:
        script = _coarse_script(sig_a, sig_b)
    out: list[tuple[Step | None, Step | None, Match]] = []
    deleted: list[Step] = []
    inserted: list[Step] = []

    def flush() -> None:
        # Within a gap, pair steps of the same kind and name in order: they changed.
        used = [False] * len(inserted)
        for step in deleted:
            partner = next((j for j, other in enumerate(inserted)
                            if not used[j] and loose_signature(other) == loose_signature(step)), None)  # fmt: skip
            if partner is None:
                out.append((step, None, Match.ONLY_A))
            else:
                used[partner] = True
                out.append((step, inserted[partner], Match.CHANGED))
        out.extend((None, other, Match.ONLY_B) for j, other in enumerate(inserted) if not used[j])
        deleted.clear()
        inserted.clear()

    for op, i, j in script:
        if op == "equal":
            flush()
            out.append((a[i], b[j], Match.MATCHED))
        elif op == "delete":
            deleted.append(a[i])
        else:
            inserted.append(b[j])
    flush()
    return out


def _build(a_steps: list[Step], b_steps: list[Step], kids_a, kids_b, depth: int) -> list[Pair]:
    pairs = []
    aligned: list[tuple[Step | None, Step | None, Match]]
    if depth == 0 and len(a_steps) == len(b_steps) == 1:
        # One root each: the same run, whatever each exporter called its root (an agent
        # span in one, a chain in the other). Their children decide what differs.
        root_a, root_b = a_steps[0], b_steps[0]
        same = signature(root_a) == signature(root_b)
        aligned = [(root_a, root_b, Match.MATCHED if same else Match.CHANGED)]
    else:
        aligned = _align_level(a_steps, b_steps)
    for a, b, match in aligned:
        if (
            match == Match.MATCHED
            and a
            and b
            and (a.status == StepStatus.ERROR) != (b.status == StepStatus.ERROR)
        ):
            match = Match.CHANGED  # the same call, but it failed on one side only
        pair = Pair(a, b, match, depth)
        pair.children = _build(kids_a.get(a.id, []) if a else [], kids_b.get(b.id, []) if b else [],
                               kids_a, kids_b, depth + 1)  # fmt: skip
        pairs.append(pair)
    return pairs


def _mark_moves(rows: list[Pair]) -> None:
    """A step only in A whose signature is only in B elsewhere was moved, not replaced."""
    only_b: dict[str, list[Pair]] = defaultdict(list)
    for pair in rows:
        if pair.match == Match.ONLY_B and pair.b is not None:
            only_b[signature(pair.b)].append(pair)
    for pair in rows:
        if pair.match == Match.ONLY_A and pair.a is not None and only_b.get(signature(pair.a)):
            partner = only_b[signature(pair.a)].pop(0)
            pair.match = partner.match = Match.MOVED


def _diverges_here(pair: Pair) -> bool:
    """Whether the runs part ways at this pair, not only below it: a root or a parent that
    is "changed" only because of what it is called or because a child failed is not where
    they diverged; its first differing descendant is."""
    if pair.match == Match.MATCHED:
        return False
    if pair.match != Match.CHANGED or pair.a is None or pair.b is None:
        return True
    if pair.a.status == pair.b.status:  # other arguments or model; at the root, a new name
        return pair.depth > 0
    differs_below = any(p.match != Match.MATCHED for child in pair.children
                        for p in _walk(child))  # fmt: skip
    return not differs_below


def _walk(pair: Pair) -> Iterable[Pair]:
    yield pair
    for child in pair.children:
        yield from _walk(child)


def totals(run: Run, steps: Iterable[Step], incidents: int = 0) -> Totals:
    result = Totals(duration_ns=run.duration_ns or 0, incidents=incidents)
    for step in steps:
        result.steps += 1
        result.tokens += (step.input_tokens or 0) + (step.output_tokens or 0)
        result.cost += step.cost or 0
    return result


def subtree_totals(pair: Pair, side: str) -> Totals:
    """Steps, tokens and cost of one side of an aligned subtree."""
    result = Totals()
    stack = [pair]
    while stack:
        current = stack.pop()
        step = current.a if side == "a" else current.b
        if step is not None and current.match != Match.MOVED:
            result.steps += 1
            result.tokens += (step.input_tokens or 0) + (step.output_tokens or 0)
            result.cost += step.cost or 0
        stack.extend(current.children)
    return result


def compare(run_a: Run, steps_a: Sequence[Step], run_b: Run, steps_b: Sequence[Step],
            incidents_a: int = 0, incidents_b: int = 0) -> Comparison:  # fmt: skip
    """Align two runs (steps as the store gives them) and sum up their differences."""
    kids_a, kids_b = _children(steps_a), _children(steps_b)
    pairs = _build(kids_a.get(None, []), kids_b.get(None, []), kids_a, kids_b, 0)
    comparison = Comparison(run_a, run_b, pairs, totals(run_a, steps_a, incidents_a),
                            totals(run_b, steps_b, incidents_b), None)  # fmt: skip
    rows = comparison.rows()
    _mark_moves(rows)
    comparison.first_divergence = next((p for p in rows if _diverges_here(p)), None)
    return comparison


# -- many runs of one request ------------------------------------------------------------


@dataclass
class PathGroup:
    """Runs that took the same path: the same sequence of step signatures."""

    key: str
    run_ids: list[str]
    example: list[str]  # the path, as short step labels


def path_key(steps: Sequence[Step]) -> tuple[str, list[str]]:
    """A run's path: the order of its step kinds and tools (models and arguments aside)."""
    ordered = sorted(steps, key=lambda s: (s.start_ns is None, s.start_ns or 0))
    labels = [loose_signature(s) for s in ordered if s.kind != StepKind.EVENT]
    return hashlib.sha1("\n".join(labels).encode()).hexdigest()[:10], labels


def group_paths(runs_steps: Iterable[tuple[Run, Sequence[Step]]]) -> list[PathGroup]:
    """Runs grouped by path, most common first."""
    groups: dict[str, PathGroup] = {}
    for run, steps in runs_steps:
        key, labels = path_key(steps)
        group = groups.setdefault(key, PathGroup(key, [], labels))
        group.run_ids.append(run.id)
    return sorted(groups.values(), key=lambda g: (-len(g.run_ids), g.key))


def compare_runs(store: Any, run_a: str, run_b: str) -> Comparison:
    """Load two runs from the store (ids or unambiguous prefixes) and compare them."""
    a, b = store.find_run(run_a), store.find_run(run_b)
    return compare(a, store.steps(a.id, payloads=False), b, store.steps(b.id, payloads=False),
                   a.incident_count, b.incident_count)  # fmt: skip
