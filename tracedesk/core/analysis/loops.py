"""Loop and retry detection: where a run stopped making progress, and what that wasted.

The rule behind every detector: **absent evidence is unknown, never equal, never empty.**
OpenTelemetry GenAI instrumentations do not record message content or tool arguments
unless asked to, and Langfuse downloads strip inputs and outputs. Two calls are "the
same" only on captured evidence: equal arguments (or model inputs), equal results, equal
specific error texts. A detector may still use what was captured (tool name, status,
error text) and then says what it could not see.

Five detectors, each yielding findings:
  retry_storm     the same call again and again, failing or never bringing a new result;
                  without recorded arguments: one tool failing in a row with one error;
  repeated_error  the same specific error (digits, ids, case ignored) on several steps;
  oscillation     a repeating pattern of calls (A→B→A→B …) with the same results;
  no_progress     consecutive identical model outputs, or one tool returning the same
                  result for different arguments;
  runaway         a run over its step, cost, token or duration limits, or one that
                  retried and still ended in an error or, on record, without an answer.

Calls are compared inside their **agent scope**: the nearest agent ancestor (or the run),
looking through wrapper spans (turns, tasks, graph nodes, chains) that only group calls.
A call nested inside another call (an instrumented client under a framework's model span)
belongs to that call, not to the agent's sequence. Calls that overlap in time are one
parallel decision, never repeated attempts.

Findings that share steps are merged into one **incident** (see ``model.Incident``); its
waste is counted once, and two incidents of a run never share a wasted step.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import platformdirs
from mypy_extensions import mypyc_attr

from tracedesk.core.model import (
    SEVERITIES,
    Evidence,
    Incident,
    Run,
    Status,
    Step,
    StepKind,
    decoded,
    severity_rank,
)
from tracedesk.core.tree import children_by_parent
from tracedesk.resources import resource

DETECTORS = ("retry_storm", "oscillation", "no_progress", "repeated_error", "runaway")
ACTION_KINDS = frozenset({StepKind.LLM, StepKind.TOOL, StepKind.RETRIEVER, StepKind.EMBEDDING})
TOOL_LIKE = frozenset({StepKind.TOOL, StepKind.RETRIEVER})
MODEL_LIKE = frozenset({StepKind.LLM, StepKind.EMBEDDING})
ZERO = Decimal(0)

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[t ]\d\d:\d\d(:\d\d(\.\d+)?)?(z|[+-]\d\d:?\d\d)?")
_HEX_ID = re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)[0-9a-f]{8,}\b")
_NUMBER = re.compile(r"\d+")


class RulesError(Exception):
    """A rules file that cannot be used; names the file and the setting."""


@mypyc_attr(native_class=False)  # sent to worker processes: pickled
@dataclass(frozen=True)
class Rules:
    """Thresholds of the detectors (resources/loop_rules.toml, overridable)."""

    settings: dict[str, Any]
    volatile_keys: frozenset[str]
    generic_errors: frozenset[str]
    control_flow_errors: tuple[str, ...]
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
            try:
                documents.append((str(path), path.read_bytes()))
            except OSError as exc:
                raise RulesError(f"{path}: cannot read: {exc.strerror or exc}") from None
        settings: dict[str, Any] = {}
        digest = hashlib.sha256(DETECTION_VERSION.encode())
        for label, raw in documents:
            digest.update(raw)
            try:
                data = tomllib.loads(raw.decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise RulesError(f"{label}: {exc}") from None
            if settings:  # the user's file may only set what the shipped one defines
                _known_keys(data, settings, label)
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
        generic = frozenset(normal_error(e) for e in settings.get("generic_errors", []))
        control = tuple(normal_error(e) for e in settings.get("control_flow_errors", []))
        return cls(settings, volatile, generic, control, digest.hexdigest()[:16])


# Part of the rules fingerprint: changing how detection works recomputes stored incidents.
DETECTION_VERSION = "incidents-2"


def user_rules_path() -> Path:
    return Path(platformdirs.user_config_dir("tracedesk", appauthor=False)) / "loop_rules.toml"


def _known_keys(data: dict[str, Any], known: dict[str, Any], label: str) -> None:
    """Refuse settings the shipped rules do not define, naming them (typos do nothing)."""
    unknown = [k for k in data if k not in known]
    unknown += [f"{section}.{k}" for section, values in data.items()
                if isinstance(values, dict) and isinstance(known.get(section), dict)
                for k in values if k not in known[section]]  # fmt: skip
    if unknown:
        raise RulesError(f"{label}: unknown setting {', '.join(unknown)}")


# Integer settings (counts) and their largest sensible value: a bigger one would only make
# the detectors spin.
COUNT_LIMIT = 10_000
NUMBER_LIMIT = 10**9  # USD, tokens, seconds


def _validate(settings: dict[str, Any], label: str) -> None:
    for key in ("volatile_keys", "generic_errors", "control_flow_errors"):
        value = settings.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RulesError(f"{label}: {key} must be a list of strings")
    for detector in DETECTORS:
        section = settings.get(detector)
        if not isinstance(section, dict):
            raise RulesError(f"{label}: missing section [{detector}]")
        for key, value in section.items():
            where = f"{label}: {detector}.{key}"
            if key.endswith("severity"):
                if value not in SEVERITIES:
                    raise RulesError(f"{where} must be one of {', '.join(SEVERITIES)}")
            elif key in ("max_cost_usd", "max_duration_s", "max_tokens"):
                if (isinstance(value, bool) or not isinstance(value, (int, float))
                        or not 0 <= value <= NUMBER_LIMIT):  # fmt: skip
                    raise RulesError(
                        f"{where} must be a number from 0 to {NUMBER_LIMIT:,}, not {value!r}"
                    )
            elif type(value) is not int or not 0 <= value <= COUNT_LIMIT:
                raise RulesError(
                    f"{where} must be a whole number from 0 to {COUNT_LIMIT:,}, not {value!r}"
                )


@dataclass(slots=True)
class Finding:
    """One detector's observation, before findings on the same steps are merged."""

    kind: str
    severity: str
    step_ids: list[str]  # involved
    wasted: list[Step]  # wasted steps, their subtrees included
    message: str
    # A run over its limits: evidence for the run's worst loop when it has one.
    run_level: bool = False


# -- normalisation ---------------------------------------------------------------------


def _normal_text(text: str) -> str:
    text = " ".join(text.split()).lower()
    if "-" not in text:  # both patterns need one; most text has none
        return text
    text = _UUID.sub("<id>", text)
    return _TIMESTAMP.sub("<time>", text)


def canonical(value: Any, volatile: frozenset[str]) -> str:
    """A comparable form of a JSON payload: sorted keys, normalised text, no volatile keys."""
    return orjson.dumps(_clean(value, volatile, 0),
                        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str).decode()  # fmt: skip


def _clean(item: Any, volatile: frozenset[str], depth: int) -> Any:
    # A module function, not a closure: a recursive closure is a reference cycle, and
    # imports run with the cycle collector paused.
    if depth > MAX_DEPTH:
        return "<nested too deeply>"
    if isinstance(item, dict):
        return {k: _clean(v, volatile, depth + 1) for k, v in item.items()
                if str(k).lower() not in volatile}  # fmt: skip
    if isinstance(item, list):
        return [_clean(v, volatile, depth + 1) for v in item]
    if isinstance(item, str):
        stripped = item.strip()
        if stripped[:1] in ("{", "["):
            try:
                return _clean(orjson.loads(stripped), volatile, depth + 1)
            except orjson.JSONDecodeError:
                pass
        return _normal_text(item)
    return item


MAX_DEPTH = 60  # payload levels compared; orjson writes at most 255, and deeper is noise


def normal_error(message: str | None) -> str:
    """An error message with the parts that change between occurrences taken out."""
    text = _normal_text(message or "")
    text = _HEX_ID.sub("<id>", text)
    return _NUMBER.sub("#", text)


def is_empty(value: Any) -> bool:
    """A recorded value with nothing in it (``None`` is not recorded, so not empty)."""
    value = decoded(value)
    if isinstance(value, str):
        return not value.strip() or value.strip() in ('""', "[]", "{}", "null")
    return value in ([], {})


def duration_covered(steps: Iterable[Step]) -> int:
    """Nanoseconds covered by the steps' time spans, overlaps counted once."""
    spans = sorted((s.start_ns, s.end_ns) for s in steps
                   if s.start_ns is not None and s.end_ns is not None and s.end_ns > s.start_ns)  # fmt: skip
    total, reach = 0, None
    for start, end in spans:
        if reach is None or start >= reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


@mypyc_attr(native_class=False)  # a cached_property needs an instance dict
class RunView:
    """A run's steps with the lookups the detectors share: tree, scopes, evidence keys."""

    def __init__(self, run: Run, steps: Sequence[Step], rules: Rules,
                 cost_of: Callable[[Step], Decimal | None]):  # fmt: skip
        self.run, self.steps, self.rules, self.cost_of = run, list(steps), rules, cost_of
        self.by_id = {s.id: s for s in self.steps}
        # The steps ``children_by_parent`` lists under None, without grouping the rest.
        self.roots = [s for s in self.steps if s.parent_id not in self.by_id]
        # Each action belongs to the sequence of its scope (see the module docstring).
        self.scope_of: dict[str, str | None] = {}
        self.scopes: dict[str | None, list[Step]] = defaultdict(list)
        self.top_actions: list[Step] = []  # not nested inside another action, in start order
        for step in self.steps:
            if step.kind in ACTION_KINDS:
                scope = self.scope_of[step.id] = self._scope(step)
                self.scopes[scope].append(step)
                if self._is_agent_scope(scope):
                    self.top_actions.append(step)
        self._call: dict[str, str | None] = {}
        self._outline: dict[str, Any] = {}
        self._outcome: dict[str, str | None] = {}
        self._canonical: dict[str, str] = {}  # by payload text: a retry repeats its text

    @cached_property
    def children(self) -> dict[str | None, list[Step]]:
        """Each step's children; only findings with subtrees need them."""
        return children_by_parent(self.steps)

    def canonical(self, payload: Any) -> str:
        if not isinstance(payload, str):
            return canonical(payload, self.rules.volatile_keys)
        # By text (the steps of one view are all decoded, or all JSON text from a reader).
        known = self._canonical.get(payload)
        if known is None:
            known = canonical(decoded(payload), self.rules.volatile_keys)
            self._canonical[payload] = known
        return known

    def parent(self, step: Step) -> str | None:
        return step.parent_id if step.parent_id in self.by_id else None

    def _scope(self, step: Step) -> str | None:
        parent = self.by_id.get(step.parent_id) if step.parent_id is not None else None
        if (
            parent is not None
            and parent is not step
            and (parent.kind == StepKind.AGENT or parent.kind in ACTION_KINDS)
        ):
            return parent.id  # the common case: the step's own parent
        seen = {step.id}
        current = self.parent(step)
        while current is not None and current not in seen:
            ancestor = self.by_id[current]
            if ancestor.kind == StepKind.AGENT or ancestor.kind in ACTION_KINDS:
                return current
            seen.add(current)
            current = self.parent(ancestor)
        return None

    def _is_agent_scope(self, scope: str | None) -> bool:
        return scope is None or self.by_id[scope].kind == StepKind.AGENT

    # Evidence keys: None means "not recorded" and never equals anything.
    def call_key(self, step: Step) -> str | None:
        """What was asked: tool + arguments, or model + input."""
        if step.id not in self._call:
            payload = asked(step)
            self._call[step.id] = (None if payload is None else
                                   f"{label(step)}:{self.canonical(payload)}")  # fmt: skip
        return self._call[step.id]

    def call_outline(self, step: Step) -> Any:
        """An outline of what was asked that equal call keys share: two calls whose
        outlines differ were asked different things, and need no canonical form (a model's
        input grows by a message or two a call: 32 us a step went into those forms)."""
        if step.id not in self._outline:
            self._outline[step.id] = _outline(decoded(asked(step)), self.rules.volatile_keys)
        return self._outline[step.id]

    def outcome_key(self, step: Step) -> str | None:
        """What came back: the specific error text, or the output."""
        if step.id not in self._outcome:
            if step.status == Status.ERROR:
                error = self.error_key(step)
                self._outcome[step.id] = None if error is None else "error:" + error
            elif step.output is None:
                self._outcome[step.id] = None
            else:
                self._outcome[step.id] = "ok:" + self.canonical(step.output)
        return self._outcome[step.id]

    def error_key(self, step: Step) -> str | None:
        """The normalised error text, or None when missing or only generic."""
        if not step.error:
            return None
        key = normal_error(step.error)
        if not key.strip() or key in self.rules.generic_errors:
            return None
        return None if key.startswith(self.rules.control_flow_errors) else key

    def subtree(self, step: Step) -> Iterator[Step]:
        yield step
        for child in self.children.get(step.id, ()):
            yield from self.subtree(child)

    def with_subtrees(self, steps: Iterable[Step]) -> list[Step]:
        seen: dict[str, Step] = {}
        for step in steps:
            for inner in self.subtree(step):
                seen.setdefault(inner.id, inner)
        return list(seen.values())

    def finding(self, kind: str, involved: Sequence[Step], wasted: Sequence[Step],
                message: str, severity_key: str = "severity", run_level: bool = False) -> Finding:  # fmt: skip
        return Finding(kind, self.rules.severity(kind, severity_key), [s.id for s in involved],
                       self.with_subtrees(wasted), message, run_level)  # fmt: skip

    def between(self, first: Step, last: Step) -> list[Step]:
        """The actions of ``first``'s scope after it, up to and including ``last``."""
        sequence = self.scopes[self.scope_of[first.id]]
        return sequence[sequence.index(first) + 1 : sequence.index(last) + 1]


def label(step: Step) -> str:
    return step.tool_name or step.model or step.name or str(step.kind)


def asked(step: Step) -> Any:
    """What a call was given: a tool call's arguments, else its input."""
    if step.kind in TOOL_LIKE and step.tool_args is not None:
        return step.tool_args
    return step.input


def _outline(value: Any, volatile: frozenset[str]) -> Any:
    """What ``canonical`` keeps of a value's top level: a list's length, an object's keys
    (a text holding JSON is read as ``_clean`` reads it); None for anything else."""
    if isinstance(value, str):
        if value.strip()[:1] not in ("{", "["):
            return None
        try:
            value = orjson.loads(value.strip())
        except orjson.JSONDecodeError:
            return None
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):  # keys as orjson writes them
        return frozenset(str(k) for k in value if str(k).lower() not in volatile)
    return None


def _short(text: str | None, limit: int = 100) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- detectors -------------------------------------------------------------------------


def _runs_of(items: Sequence[Step], same: Callable[[Step, Step], bool]) -> Iterator[list[Step]]:
    """Maximal runs of consecutive items where each is ``same`` as the one before, split
    where a call starts before the previous one ended (a parallel fan-out is one decision)."""
    start = 0
    for index in range(1, len(items) + 1):
        if (index == len(items) or _overlaps(items[index - 1], items[index])
                or not same(items[index - 1], items[index])):  # fmt: skip
            yield list(items[start:index])
            start = index


def _runs_of_same_label(
    items: Sequence[Step], min_length: int, same: Callable[[Step, Step], bool]
) -> Iterator[list[Step]]:
    """``_runs_of`` within the stretches of consecutive items with the same label, at least
    ``min_length`` long: where the same call repeats, the label does (and ``same`` is only
    asked where it can be true)."""
    labels = [label(s) for s in items]
    start = 0
    for index in range(1, len(items) + 1):
        if index == len(items) or labels[index] != labels[start]:
            if index - start >= min_length:
                yield from _runs_of(items[start:index], same)
            start = index


def _overlaps(before: Step, after: Step) -> bool:
    return (before.end_ns is not None and after.start_ns is not None
            and after.start_ns < before.end_ns)  # fmt: skip


def _same_payload(a: Any, b: Any) -> bool:
    """The very same payload (so the same canonical form, which need not be made): how a
    retry repeats its arguments."""
    if type(a) is not type(b):
        return False
    if isinstance(a, str):
        return a == b
    try:
        return orjson.dumps(a, option=orjson.OPT_NON_STR_KEYS) == orjson.dumps(
            b, option=orjson.OPT_NON_STR_KEYS
        )  # types told apart: 1 is not true or 1.0
    except TypeError:
        return False


def _known_equal(a: str | None, b: str | None) -> bool:
    return a is not None and a == b


def _same_call(view: RunView, a: Step, b: Step) -> bool:
    """The same call again: equal recorded arguments; or, where they were not recorded,
    the same tool failing with the same specific error."""
    if label(a) != label(b):
        return False
    if asked(a) is not None and asked(b) is not None:
        return _same_payload(asked(a), asked(b)) or (
            view.call_outline(a) == view.call_outline(b) and view.call_key(a) == view.call_key(b)
        )
    return (a.status == b.status == Status.ERROR
            and _known_equal(view.outcome_key(a), view.outcome_key(b)))  # fmt: skip


def _ended_with_news(view: RunView, calls: list[Step]) -> bool:
    """The last call succeeded with a recorded result none of the earlier ones had:
    polling that got its answer, or a retry that recovered."""
    last = view.outcome_key(calls[-1])
    return (calls[-1].status != Status.ERROR and last is not None
            and all(view.outcome_key(c) != last for c in calls[:-1]))  # fmt: skip


def detect_retry_storms(view: RunView) -> Iterator[Finding]:
    min_repeats = view.rules.get("retry_storm", "min_repeats")
    for actions in view.scopes.values():
        for group in (TOOL_LIKE, MODEL_LIKE):
            calls = [s for s in actions if s.kind in group]
            for run in _runs_of_same_label(calls, min_repeats, lambda a, b: _same_call(view, a, b)):
                if len(run) < min_repeats:
                    continue
                failed = sum(s.status == Status.ERROR for s in run)
                outcomes = [view.outcome_key(s) for s in run]
                if failed < min_repeats and (None in outcomes or _ended_with_news(view, run)):
                    continue  # no recorded sign that the repeats brought nothing new
                if asked(run[0]) is None:
                    message = (f"{label(run[0])} failed {len(run)} times in a row with"
                               f" {_short(run[0].error)!r} (arguments not recorded)")  # fmt: skip
                else:
                    outcome = ("failed every time" if failed == len(run) else
                               f"failed {failed} times" if failed else "returned the same result")  # fmt: skip
                    message = f"{label(run[0])} called {len(run)} times with the same arguments; {outcome}"
                yield view.finding("retry_storm", run, view.between(run[0], run[-1]), message)


def detect_repeated_errors(view: RunView) -> Iterator[Finding]:
    min_repeats = view.rules.get("repeated_error", "min_repeats")
    # An error passed up to an ancestor (a wrapper, the agent) is the same failure.
    passed_up: set[tuple[str, str]] = set()
    keys: dict[str, str] = {}
    for step in view.steps:
        key = view.error_key(step) if step.status == Status.ERROR else None
        if key is None:
            continue
        keys[step.id] = key
        ancestor = view.parent(step)
        while ancestor is not None and (ancestor, key) not in passed_up:
            passed_up.add((ancestor, key))
            ancestor = view.parent(view.by_id[ancestor])
    by_error: dict[str, list[Step]] = defaultdict(list)
    for step in view.steps:
        key = keys.get(step.id)
        if key is not None and (step.id, key) not in passed_up:
            by_error[key].append(step)
    for steps in by_error.values():
        if len(steps) >= min_repeats:
            yield view.finding("repeated_error", steps, steps[1:],
                               f"the same error {len(steps)} times: {_short(steps[0].error)}")  # fmt: skip


def detect_oscillations(view: RunView) -> Iterator[Finding]:
    max_period = view.rules.get("oscillation", "max_period")
    min_cycles = view.rules.get("oscillation", "min_cycles")
    for actions in view.scopes.values():
        calls = [s for s in actions if s.kind in TOOL_LIKE]
        keys = []
        for s in calls:
            # Unrecorded calls get a key of their own: they never repeat a pattern (the
            # outcome first: without one, the arguments need no canonical form).
            outcome = view.outcome_key(s)
            call = view.call_key(s) if outcome else None
            keys.append(f"{call}→{outcome}" if call and outcome else f"unknown:{s.id}")
        if len(set(keys)) == len(keys):
            continue  # no key repeats: nothing can cycle
        covered, index = -1, 0
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
            names = " → ".join(label(s) for s in calls[index : index + period])
            yield view.finding(
                "oscillation", calls[index:end],
                view.between(calls[index + period - 1], calls[end - 1]),
                f"{names} repeated {(end - index) // period} times with the same results",
            )  # fmt: skip
            covered, index = end - 1, end


def detect_no_progress(view: RunView) -> Iterator[Finding]:
    min_repeats = view.rules.get("no_progress", "min_repeats")
    for actions in view.scopes.values():
        models = [s for s in actions if s.kind == StepKind.LLM]

        def same_answer(a: Step, b: Step) -> bool:
            return (Status.ERROR not in (a.status, b.status) and a.output is not None
                    and b.output is not None and not is_empty(a.output)
                    and view.canonical(a.output) == view.canonical(b.output))  # fmt: skip

        answered = sum(s.output is not None for s in models)
        for run in _runs_of(models, same_answer) if answered >= min_repeats else ():
            if len(run) >= min_repeats:
                yield view.finding("no_progress", run, view.between(run[0], run[-1]),
                                   f"{len(run)} model calls in a row gave the same answer")  # fmt: skip
        tools = [s for s in actions if s.kind in TOOL_LIKE]

        def same_result_new_args(a: Step, b: Step) -> bool:
            if not (label(a) == label(b) and a.status != Status.ERROR != b.status
                    and _known_equal(view.outcome_key(a), view.outcome_key(b))):  # fmt: skip
                return False  # the arguments' canonical forms are only made when needed
            call_a, call_b = view.call_key(a), view.call_key(b)
            return call_a is not None and call_b is not None and call_a != call_b

        for run in _runs_of_same_label(tools, min_repeats, same_result_new_args):
            if len(run) >= min_repeats and len({view.call_key(s) for s in run}) == len(run):
                yield view.finding(
                    "no_progress", run, view.between(run[0], run[-1]),
                    f"{label(run[0])} returned the same result for {len(run)} different inputs",
                )  # fmt: skip


def answer_state(view: RunView) -> str:
    """'answered', 'none' (an empty answer on record) or 'unknown' (nothing recorded).

    The answer may be recorded on the run (Langfuse ``trace.output``), on a root step
    (LangSmith root outputs, an agent span) or as the output of the run's last model call.
    """
    candidates = [view.run.attributes.get("langfuse.output")]
    candidates += [s.output for s in view.roots]
    actions = view.top_actions
    if actions and actions[-1].kind == StepKind.LLM and actions[-1].status != Status.ERROR:
        candidates.append(actions[-1].output)
    recorded = [c for c in candidates if c is not None]
    if any(not is_empty(c) for c in recorded):
        return "answered"
    return "none" if recorded else "unknown"


def detect_runaway(view: RunView) -> Iterator[Finding]:
    rules = view.rules
    actions = view.top_actions
    limits = [
        ("max_steps", "steps", lambda s: 1),
        ("max_tokens", "tokens", lambda s: (s.input_tokens or 0) + (s.output_tokens or 0)),
        ("max_cost_usd", "USD", lambda s: view.cost_of(s) or ZERO),
    ]
    for key, unit, measure in limits:
        limit = rules.get("runaway", key)
        if not limit:
            continue
        total: int | Decimal = 0
        crossed = None
        for index, step in enumerate(actions):
            total += measure(step)
            if crossed is None and total > limit:
                crossed = index
        if crossed is not None:
            over = actions[crossed:]
            shown = f"{total:.4f}" if unit == "USD" else str(total)
            yield view.finding("runaway", over, over[1:] if key == "max_steps" else over,
                               f"{shown} {unit} over the limit of {limit} {unit}", run_level=True)  # fmt: skip
    limit_s = rules.get("runaway", "max_duration_s")
    duration = view.run.duration_ns
    if limit_s and duration is not None and duration > limit_s * 1e9:
        start = min((s.start_ns for s in view.steps if s.start_ns is not None), default=None)
        late = [a for a in actions if start is not None and a.start_ns is not None
                and a.start_ns > start + limit_s * 1e9]  # fmt: skip
        yield view.finding("runaway", late or actions[-1:], late,
                           f"ran {duration / 1e9:.1f} s, over the limit of {limit_s} s", run_level=True)  # fmt: skip
    roots = view.roots
    failed = view.run.status == Status.ERROR or any(r.status == Status.ERROR for r in roots)
    ending = ("ended in an error" if failed else
              "ended without an answer" if answer_state(view) == "none" else None)  # fmt: skip
    if ending is None:
        return
    retried: dict[str, Step] = {}
    for sequence in view.scopes.values():
        for before, after in itertools.pairwise(sequence):
            if not _overlaps(before, after) and _same_call(view, before, after):
                retried.setdefault(before.id, before)
                retried.setdefault(after.id, after)
    if retried:
        involved = [s for s in view.steps if s.id in retried]
        yield view.finding("runaway", involved, [], f"retried {label(involved[0])} and still {ending}",
                           "failed_after_retry_severity")  # fmt: skip


DETECTOR_FUNCTIONS = {
    "retry_storm": detect_retry_storms,
    "oscillation": detect_oscillations,
    "no_progress": detect_no_progress,
    "repeated_error": detect_repeated_errors,
    "runaway": detect_runaway,
}


def _merge(view: RunView, findings: list[Finding]) -> list[Incident]:
    """Findings that share an involved or wasted step become one incident. A run over its
    limits joins the incident with the most waste (the loop that took it there); alone,
    it is an incident of its own."""
    local = [f for f in findings if not f.run_level]
    limits = [f for f in findings if f.run_level]
    groups = _overlapping(local)
    if groups and limits:
        max(groups, key=lambda g: len({s.id for f in g for s in f.wasted})).extend(limits)
    elif limits:
        groups.append(limits)
    order = {s.id: n for n, s in enumerate(view.steps)}
    incidents = []
    for group in groups:
        group.sort(key=lambda f: (-severity_rank(f.severity), DETECTORS.index(f.kind)))
        involved = sorted({i for f in group for i in f.step_ids}, key=order.__getitem__)
        wasted = sorted({s.id: s for f in group for s in f.wasted}.values(),
                        key=lambda s: order[s.id])  # fmt: skip
        incidents.append(Incident(
            run_id=view.run.id,
            findings=[Evidence(f.kind, f.severity, f.message) for f in group],
            step_ids=involved, wasted_step_ids=[s.id for s in wasted],
            wasted_tokens=sum((s.input_tokens or 0) + (s.output_tokens or 0) for s in wasted),
            wasted_cost=sum((view.cost_of(s) or ZERO for s in wasted), ZERO),
            wasted_ns=duration_covered(wasted),
            wasted_unpriced=sum(view.cost_of(s) is None and bool(s.input_tokens or s.output_tokens)
                                for s in wasted),
        ))  # fmt: skip
    incidents.sort(key=lambda i: order[i.step_ids[0]] if i.step_ids else -1)
    return incidents


def _overlapping(findings: list[Finding]) -> list[list[Finding]]:
    """The findings grouped so that findings sharing a step are in one group."""
    owner = list(range(len(findings)))

    def root(i: int) -> int:
        while owner[i] != i:
            owner[i] = owner[owner[i]]
            i = owner[i]
        return i

    first_holder: dict[str, int] = {}
    for i, f in enumerate(findings):
        for step_id in [*f.step_ids, *(s.id for s in f.wasted)]:
            j = first_holder.setdefault(step_id, i)
            owner[root(i)] = root(j)
    groups: dict[int, list[Finding]] = defaultdict(list)
    for i, f in enumerate(findings):
        groups[root(i)].append(f)
    return list(groups.values())


def detect(run: Run, steps: Sequence[Step], rules: Rules,
           cost_of: Callable[[Step], Decimal | None] = lambda s: s.cost) -> list[Incident]:  # fmt: skip
    """The incidents of one run (steps with payloads, in start order)."""
    view = RunView(run, steps, rules, cost_of)
    return _merge(view, [f for function in DETECTOR_FUNCTIONS.values() for f in function(view)])
