"""Loop and retry detection: where a run stopped making progress, and what that wasted.

Five detectors, each yielding Findings:
  retry_storm     the same call (tool + arguments, or model + input) again and again,
                  failing or returning the same result;
  repeated_error  the same error (digits, ids, case ignored) on several steps;
  oscillation     a repeating pattern of calls (A→B→A→B …) with no new results;
  no_progress     consecutive identical model outputs, or one tool returning the same
                  result for different arguments;
  runaway         a run over its step, cost, token or duration limits, or one that
                  retried and still ended in an error or without an answer.
Calls are compared after normalising their JSON (key order, white space, case, ids and
timestamps, volatile keys). Wasted tokens and cost are those of the repeats after the
first attempt, with everything the agent did in between.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import platformdirs

from tracedesk.core.model import Run, Status, Step, StepKind
from tracedesk.resources import resource

SEVERITIES = ("info", "warning", "error")
DETECTORS = ("retry_storm", "repeated_error", "oscillation", "no_progress", "runaway")
ACTION_KINDS = frozenset({StepKind.LLM, StepKind.TOOL, StepKind.RETRIEVER, StepKind.EMBEDDING})
TOOL_LIKE = frozenset({StepKind.TOOL, StepKind.RETRIEVER})
ZERO = Decimal(0)

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[t ]\d\d:\d\d(:\d\d(\.\d+)?)?(z|[+-]\d\d:?\d\d)?")
_HEX_ID = re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)[0-9a-f]{8,}\b")
_NUMBER = re.compile(r"\d+")


class RulesError(Exception):
    """A rules file that cannot be used; names the file and the setting."""


@dataclass(frozen=True)
class Rules:
    """Thresholds of the detectors (resources/loop_rules.toml, overridable)."""

    settings: dict[str, Any]
    volatile_keys: frozenset[str]
    fingerprint: str

    def get(self, detector: str, key: str) -> Any:
        return self.settings[detector][key]

    def severity(self, detector: str, key: str = "severity") -> str:
        return self.settings[detector][key]

    @classmethod
    def load(
        cls, user_file: Path | None = None, use_user_file: bool = True, **overrides: Any
    ) -> Rules:
        """Shipped rules, overlaid by the user's file and then by ``detector__key=value``."""
        documents = [("loop_rules.toml (shipped)", resource("loop_rules.toml").read_bytes())]
        path = user_file or user_rules_path()
        if user_file is not None and not path.exists():
            raise RulesError(f"{path}: no such rules file")
        if use_user_file and path.exists():
            documents.append((str(path), path.read_bytes()))
        settings: dict[str, Any] = {}
        digest = hashlib.sha256()
        for label, raw in documents:
            digest.update(raw)
            try:
                data = tomllib.loads(raw.decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise RulesError(f"{label}: {exc}") from None
            for key, value in data.items():
                if isinstance(value, dict):
                    settings.setdefault(key, {}).update(value)
                else:
                    settings[key] = value
        for name, value in overrides.items():
            detector, _, key = name.partition("__")
            settings.setdefault(detector, {})[key] = value
        digest.update(repr(sorted(overrides.items())).encode())
        _validate(settings, documents[-1][0])
        volatile = frozenset(k.lower() for k in settings.get("volatile_keys", []))
        return cls(settings, volatile, digest.hexdigest()[:16])


def user_rules_path() -> Path:
    return Path(platformdirs.user_config_dir("tracedesk", appauthor=False)) / "loop_rules.toml"


def _validate(settings: dict[str, Any], label: str) -> None:
    for detector in DETECTORS:
        section = settings.get(detector)
        if not isinstance(section, dict):
            raise RulesError(f"{label}: missing section [{detector}]")
        for key, value in section.items():
            if key.endswith("severity"):
                if value not in SEVERITIES:
                    raise RulesError(
                        f"{label}: {detector}.{key} must be one of {', '.join(SEVERITIES)}"
                    )
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise RulesError(f"{label}: {detector}.{key} must be a number >= 0, not {value!r}")


@dataclass(slots=True)
class Finding:
    kind: str
    severity: str
    run_id: str
    step_ids: list[str]
    message: str
    wasted_tokens: int = 0
    wasted_cost: Decimal = ZERO
    wasted_step_ids: list[str] = field(default_factory=list)

    @property
    def first_step(self) -> str | None:
        return self.step_ids[0] if self.step_ids else None

    @property
    def last_step(self) -> str | None:
        return self.step_ids[-1] if self.step_ids else None


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


# -- normalisation ---------------------------------------------------------------------


def _normal_text(text: str) -> str:
    text = " ".join(text.split()).lower()
    text = _UUID.sub("<id>", text)
    return _TIMESTAMP.sub("<time>", text)


def canonical(value: Any, volatile: frozenset[str]) -> str:
    """A comparable form of a JSON payload: sorted keys, normalised text, no volatile keys."""

    def clean(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: clean(v) for k, v in item.items() if str(k).lower() not in volatile}
        if isinstance(item, list):
            return [clean(v) for v in item]
        if isinstance(item, str):
            stripped = item.strip()
            if stripped[:1] in ("{", "["):
                try:
                    return clean(orjson.loads(stripped))
                except orjson.JSONDecodeError:
                    pass
            return _normal_text(item)
        return item

    return orjson.dumps(clean(value), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=str).decode()  # fmt: skip


def normal_error(message: str | None) -> str:
    """An error message with the parts that change between occurrences taken out."""
    text = _normal_text(message or "")
    text = _HEX_ID.sub("<id>", text)
    return _NUMBER.sub("#", text)


class _RunView:
    """A run's steps with the lookups the detectors share."""

    def __init__(self, run: Run, steps: Sequence[Step], rules: Rules,
                 cost_of: Callable[[Step], Decimal | None]):  # fmt: skip
        self.run, self.steps, self.rules, self.cost_of = run, list(steps), rules, cost_of
        self.by_id = {s.id: s for s in self.steps}
        self.children: dict[str | None, list[Step]] = defaultdict(list)
        for step in self.steps:
            parent = step.parent_id if step.parent_id in self.by_id else None
            self.children[parent].append(step)
        self._signature: dict[str, str] = {}
        self._result: dict[str, str] = {}

    def signature(self, step: Step) -> str:
        if step.id not in self._signature:
            volatile = self.rules.volatile_keys
            if step.kind in TOOL_LIKE:
                args = step.tool_args if step.tool_args is not None else step.input
                sig = f"{step.kind}:{step.tool_name or step.name}:{canonical(args, volatile)}"
            else:
                sig = f"{step.kind}:{step.model or step.name}:{canonical(step.input, volatile)}"
            self._signature[step.id] = sig
        return self._signature[step.id]

    def result(self, step: Step) -> str:
        if step.id not in self._result:
            if step.status == Status.ERROR:
                self._result[step.id] = "error:" + normal_error(step.error)
            else:
                self._result[step.id] = "ok:" + canonical(step.output, self.rules.volatile_keys)
        return self._result[step.id]

    def sibling_groups(self) -> Iterator[list[Step]]:
        """The action steps under each parent, in start order."""
        for siblings in self.children.values():
            actions = [s for s in siblings if s.kind in ACTION_KINDS]
            if actions:
                yield actions

    def subtree(self, step: Step) -> Iterator[Step]:
        yield step
        for child in self.children.get(step.id, ()):
            yield from self.subtree(child)

    def finding(self, kind: str, severity: str, involved: Sequence[Step],
                wasted: Sequence[Step], message: str) -> Finding:  # fmt: skip
        """A finding whose waste is the given steps with everything below them."""
        seen: dict[str, Step] = {}
        for step in wasted:
            for inner in self.subtree(step):
                seen.setdefault(inner.id, inner)
        tokens = sum((s.input_tokens or 0) + (s.output_tokens or 0) for s in seen.values())
        cost = sum((self.cost_of(s) or ZERO for s in seen.values()), ZERO)
        return Finding(kind, severity, self.run.id, [s.id for s in involved], message,
                       tokens, cost, list(seen))  # fmt: skip

    def between(self, first: Step, last: Step) -> list[Step]:
        """The siblings of ``first`` after it, up to and including ``last``."""
        siblings = self.children[first.parent_id if first.parent_id in self.by_id else None]
        start, end = siblings.index(first), siblings.index(last)
        return siblings[start + 1 : end + 1]


def _label(step: Step) -> str:
    return step.tool_name or step.model or step.name or str(step.kind)


# -- detectors -------------------------------------------------------------------------


def _equal_runs(items: Sequence[Step], key: Callable[[Step], str]) -> Iterator[list[Step]]:
    """Maximal runs of consecutive items with the same key."""
    start = 0
    for index in range(1, len(items) + 1):
        if index == len(items) or key(items[index]) != key(items[start]):
            yield list(items[start:index])
            start = index


def _sequential(items: Sequence[Step]) -> Iterator[list[Step]]:
    """Split where a call starts before the previous one ended: a parallel fan-out is
    one decision, not repeated attempts."""
    start = 0
    for index in range(1, len(items) + 1):
        if index == len(items) or _overlaps(items[index - 1], items[index]):
            yield list(items[start:index])
            start = index


def _overlaps(before: Step, after: Step) -> bool:
    return (before.end_ns is not None and after.start_ns is not None
            and after.start_ns < before.end_ns)  # fmt: skip


def _ended_with_news(view: _RunView, calls: list[Step]) -> bool:
    """The last call succeeded with a result none of the earlier ones had: polling that
    got its answer, or a retry that recovered."""
    last = calls[-1]
    return last.status != Status.ERROR and all(
        view.result(last) != view.result(c) for c in calls[:-1]
    )


def detect_retry_storms(view: _RunView) -> Iterator[Finding]:
    min_repeats = view.rules.get("retry_storm", "min_repeats")
    for actions in view.sibling_groups():
        for group in (TOOL_LIKE, frozenset({StepKind.LLM, StepKind.EMBEDDING})):
            calls = [s for s in actions if s.kind in group]
            for run in (r for seq in _sequential(calls) for r in _equal_runs(seq, view.signature)):
                failed = sum(s.status == Status.ERROR for s in run)
                if len(run) < min_repeats or (failed < min_repeats and _ended_with_news(view, run)):
                    continue
                outcome = "failed every time" if failed == len(run) else (
                    f"failed {failed} times" if failed else "returned the same result")  # fmt: skip
                yield view.finding(
                    "retry_storm", view.rules.severity("retry_storm"), run,
                    view.between(run[0], run[-1]),
                    f"{_label(run[0])} called {len(run)} times with the same arguments; {outcome}",
                )  # fmt: skip


def detect_repeated_errors(view: _RunView) -> Iterator[Finding]:
    min_repeats = view.rules.get("repeated_error", "min_repeats")
    by_error: dict[str, list[Step]] = defaultdict(list)
    for step in view.steps:
        if step.status != Status.ERROR:
            continue
        message = normal_error(step.error)
        # An error passed up from a child is the same failure, not a new one.
        children = view.children.get(step.id, ())
        if any(c.status == Status.ERROR and normal_error(c.error) == message for c in children):
            continue
        by_error[message].append(step)
    for steps in by_error.values():
        if len(steps) >= min_repeats:
            text = " ".join((steps[0].error or "error").split())[:120]
            yield view.finding(
                "repeated_error", view.rules.severity("repeated_error"), steps, steps[1:],
                f"the same error {len(steps)} times: {text}",
            )  # fmt: skip


def detect_oscillations(view: _RunView) -> Iterator[Finding]:
    max_period = view.rules.get("oscillation", "max_period")
    min_cycles = view.rules.get("oscillation", "min_cycles")
    for actions in view.sibling_groups():
        calls = [s for s in actions if s.kind in TOOL_LIKE]
        keys = [view.signature(s) + "→" + view.result(s) for s in calls]
        covered = -1
        index = 0
        while index < len(calls):
            found = None
            for period in range(2, max_period + 1):
                window = keys[index : index + period]
                if len(window) < period or len(set(window)) < 2 or index <= covered:
                    continue
                end = index + period
                while end < len(keys) and keys[end] == keys[end - period]:
                    end += 1
                if (end - index) // period >= min_cycles:
                    found = (period, end)
                    break
            if found is None:
                index += 1
                continue
            period, end = found
            cycle = calls[index : index + period]
            names = " → ".join(_label(s) for s in cycle)
            yield view.finding(
                "oscillation", view.rules.severity("oscillation"), calls[index:end],
                view.between(calls[index + period - 1], calls[end - 1]),
                f"{names} repeated {(end - index) // period} times with the same results",
            )  # fmt: skip
            covered = end - 1
            index = end


def detect_no_progress(view: _RunView) -> Iterator[Finding]:
    min_repeats = view.rules.get("no_progress", "min_repeats")
    volatile = view.rules.volatile_keys
    llm_calls = [s for s in view.steps if s.kind == StepKind.LLM and s.status != Status.ERROR
                 and s.output is not None]  # fmt: skip
    for run in _equal_runs(llm_calls, lambda s: canonical(s.output, volatile)):
        if len(run) >= min_repeats:
            yield view.finding(
                "no_progress", view.rules.severity("no_progress"), run,
                view.between(run[0], run[-1]) if run[0].parent_id == run[-1].parent_id else run[1:],
                f"{len(run)} model calls in a row gave the same answer",
            )  # fmt: skip
    for actions in view.sibling_groups():
        tools = [s for s in actions if s.kind in TOOL_LIKE]
        sequences = (r for seq in _sequential(tools) for r in _equal_runs(seq, _label))
        for same_tool in sequences:
            results = [s for s in same_tool if s.status != Status.ERROR and s.output is not None]
            for run in _equal_runs(results, view.result):
                if len(run) >= min_repeats and len({view.signature(s) for s in run}) == len(run):
                    yield view.finding(
                        "no_progress", view.rules.severity("no_progress"), run,
                        view.between(run[0], run[-1]),
                        f"{_label(run[0])} returned the same result for {len(run)} different inputs",
                    )  # fmt: skip


def detect_runaway(view: _RunView) -> Iterator[Finding]:
    rules = view.rules
    actions = [s for s in view.steps if s.kind in ACTION_KINDS]
    limits = [
        ("max_steps", "steps", lambda s: 1),
        ("max_tokens", "tokens", lambda s: (s.input_tokens or 0) + (s.output_tokens or 0)),
        ("max_cost_usd", "USD", lambda s: view.cost_of(s) or ZERO),
    ]
    for key, unit, measure in limits:
        limit = rules.get("runaway", key)
        if not limit:
            continue
        total, crossed = 0, None
        for index, step in enumerate(actions):
            total += measure(step)
            if crossed is None and total > limit:
                crossed = index
        if crossed is not None:
            over = actions[crossed:]
            shown = f"{total:.4f}" if unit == "USD" else str(total)
            yield view.finding(
                "runaway", rules.severity("runaway"), over, over[1:] if key == "max_steps" else over,
                f"{shown} {unit} over the limit of {limit} {unit}",
            )  # fmt: skip
    limit_s = rules.get("runaway", "max_duration_s")
    duration = view.run.duration_ns
    if limit_s and duration is not None and duration > limit_s * 1e9 and actions:
        yield view.finding("runaway", rules.severity("runaway"), actions, [],
                           f"ran {duration / 1e9:.1f} s, over the limit of {limit_s} s")  # fmt: skip
    roots = view.children[None]
    answered = any(r.output not in (None, "", [], {}) for r in roots)
    failed = view.run.status == Status.ERROR or any(r.status == Status.ERROR for r in roots)
    if failed or not answered:
        repeated = [s for s, n in Counter(view.signature(a) for a in actions).items() if n > 1]
        if repeated:
            involved = [a for a in actions if view.signature(a) in repeated]
            ending = "ended in an error" if failed else "ended without an answer"
            yield view.finding(
                "runaway", rules.severity("runaway", "failed_after_retry_severity"), involved, [],
                f"retried {_label(involved[0])} and still {ending}",
            )  # fmt: skip


DETECTOR_FUNCTIONS = {
    "retry_storm": detect_retry_storms,
    "repeated_error": detect_repeated_errors,
    "oscillation": detect_oscillations,
    "no_progress": detect_no_progress,
    "runaway": detect_runaway,
}


def detect(run: Run, steps: Sequence[Step], rules: Rules,
           cost_of: Callable[[Step], Decimal | None] = lambda s: s.cost) -> list[Finding]:  # fmt: skip
    """Every finding of every detector for one run (steps with payloads, in start order)."""
    view = _RunView(run, steps, rules, cost_of)
    return [f for function in DETECTOR_FUNCTIONS.values() for f in function(view)]


RULES_META_KEY = "loop_rules_fingerprint"


def apply_findings(store: Any, rules: Rules, run_ids: Iterable[str] | None = None) -> None:
    """Detect and store the findings of these runs (all when None), inside a transaction."""
    ids = store.run_ids() if run_ids is None else list(run_ids)
    findings: list[Finding] = []
    for run_id in ids:
        run = store.get_run(run_id)
        if run is not None:
            findings.extend(detect(run, store.steps(run_id), rules))
    store.replace_findings(ids, findings)
    if run_ids is None:
        store.set_meta(RULES_META_KEY, rules.fingerprint)


def refresh_findings(store: Any, rules: Rules) -> bool:
    """Recompute every run's findings if the rules changed since they were last applied."""
    if store.get_meta(RULES_META_KEY) == rules.fingerprint:
        return False
    with store.transaction():
        apply_findings(store, rules)
    return True
