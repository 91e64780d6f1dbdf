"""The search language shared by the GUI and the CLI, parsed into parameterised SQL.

A query is terms combined with AND (the default, or written ``AND``), ``OR`` and ``NOT``
(or a leading ``-``), grouped with parentheses. A term is a word or a ``"quoted phrase"``
searched in the full-text index (names, errors, tool names and arguments, inputs,
outputs, attribute values; ``word*`` searches a prefix), or a field::

    tool:fetch_url   model:gpt-4o*   kind:llm   status:error   name:plan*   provider:openai
    run:0af3*   session:chat_*   finding:retry_storm
    cost>0.01   tokens>5000   duration>2s   attr.gen_ai.provider.name=openai

Text fields compare case-insensitively, ``*`` matching any run of characters. Numbers
compare with ``>``, ``>=``, ``<``, ``<=``, ``=`` and ``!=``; durations take ``ns``,
``us``, ``ms``, ``s``, ``m`` or ``h`` (seconds without a unit); token counts take ``k``
and ``M``.

Nothing the user typed is ever put into the SQL text: every value is a parameter, and the
text given to FTS5's MATCH is quoted here (each word a quoted FTS string), so FTS syntax
in a query is searched for, never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from tracedesk.core.importers.semconv import SYNONYMS
from tracedesk.core.model import Status, StepKind

MAX_TERMS = 64
MAX_DEPTH = 16
MAX_QUERY = 2000

TEXT_FIELDS = {  # field -> the SQL (over steps AS s) it compares
    "tool": "s.tool_name",
    "model": "s.model",
    "name": "s.name",
    "provider": "s.provider",
    "run": "s.run_id",
    "step": "s.id",
}
NUMBER_FIELDS = {
    "cost": "s.cost_pusd",
    "tokens": "(coalesce(s.input_tokens, 0) + coalesce(s.output_tokens, 0))",
    "duration": "(s.end_ns - s.start_ns)",
}
# Attributes an importer moves into a column of their own (and out of ``attributes``).
ATTRIBUTE_COLUMNS = {
    key: f"s.{column}"
    for column in ("model", "provider", "tool_name", "input_tokens", "output_tokens",
                   "cached_input_tokens", "reasoning_tokens", "cache_creation_tokens")
    for key in SYNONYMS[column]
}  # fmt: skip
OTHER_FIELDS = ("kind", "status", "session", "finding", "attr.KEY")
FIELDS = (*TEXT_FIELDS, *NUMBER_FIELDS, *OTHER_FIELDS)
# Columns the full-text index holds (and a LIKE scan reads when the index is off).
FTS_COLUMNS = ("name", "tool_name", "error", "tool_args", "input", "output", "attributes")
DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9,
                  "m": 60 * 10**9, "min": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
COUNT_SUFFIXES = {"": 1, "k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}
OPERATORS = (">=", "<=", "!=", "=", ">", "<", ":")
_FIELD = re.compile(r"(attr\.[^\s=<>!:()\"]+|[A-Za-z_]+)(>=|<=|!=|=|>|<|:)(.*)", re.S)


class SearchError(ValueError):
    """A query that cannot be read; the message is one line that names the bad term."""

    def __init__(self, message: str, term: str = "", position: int | None = None):
        where = f" at {position + 1}" if position is not None else ""
        super().__init__(f"{message} (in {term!r}{where})" if term else message)
        self.term, self.position = term, position


# -- syntax tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Words or a phrase for the full-text index."""

    text: str
    phrase: bool = False
    prefix: bool = False


@dataclass(frozen=True)
class Field:
    name: str
    op: str
    value: str
    term: str = field(default="", compare=False)
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    node: Node


@dataclass(frozen=True)
class And:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    nodes: tuple[Node, ...]


Node = Text | Field | Not | And | Or


# -- tokens --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "AND", "OR", "NOT", "-", "term"
    text: str
    position: int
    quoted: bool = False  # the whole term was a quoted phrase


def _tokens(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
            continue
        if c in "()":
            tokens.append(_Token(c, c, i))
            i += 1
            continue
        if c == "-" and i + 1 < n and not query[i + 1].isspace() and query[i + 1] != ")":
            tokens.append(_Token("-", c, i))  # a leading dash: NOT
            i += 1
            continue
        start, quoted_whole, parts = i, c == '"', []
        while i < n and not query[i].isspace() and query[i] not in "()":
            if query[i] == '"':
                end = query.find('"', i + 1)
                if end < 0:
                    raise SearchError("a quote is not closed", query[i:], i)
                parts.append(query[i + 1 : end])
                i = end + 1
            else:
                parts.append(query[i])
                i += 1
        text = "".join(parts)
        whole = query[start:i]
        quoted = quoted_whole and whole.endswith('"') and whole.count('"') == 2
        if not quoted and whole in ("AND", "OR", "NOT"):
            tokens.append(_Token(whole, whole, start))
        else:
            tokens.append(_Token("term", text if quoted else whole, start, quoted))
    return tokens


# -- parser --------------------------------------------------------------------------


class _Parser:
    def __init__(self, query: str):
        self.query = query
        self.tokens = _tokens(query)
        self.at = 0
        self.terms = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def parse(self) -> Node | None:
        if not self.tokens:
            return None
        node = self.either(0)
        token = self.peek()
        if token is not None:
            raise SearchError("unexpected " + repr(token.text), token.text, token.position)
        return node

    def either(self, depth: int) -> Node:
        nodes = [self.both(depth)]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            self._operand_follows(token)
            nodes.append(self.both(depth))
        return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))

    def both(self, depth: int) -> Node:
        nodes = [self.unary(depth)]
        while (token := self.peek()) is not None and token.kind not in ("OR", ")"):
            if token.kind == "AND":
                self.take()
                self._operand_follows(token)
            nodes.append(self.unary(depth))
        return nodes[0] if len(nodes) == 1 else And(tuple(nodes))

    def _operand_follows(self, operator: _Token) -> None:
        token = self.peek()
        if token is None or token.kind in ("AND", "OR", ")"):
            raise SearchError(f"{operator.text} needs a term after it", operator.text,
                              operator.position)  # fmt: skip

    def unary(self, depth: int) -> Node:
        token = self.peek()
        assert token is not None
        if token.kind in ("NOT", "-"):
            self.take()
            self._operand_follows(token)
            if depth >= MAX_DEPTH:
                raise SearchError("too deeply nested", token.text, token.position)
            return Not(self.unary(depth + 1))
        if token.kind == "(":
            self.take()
            if depth >= MAX_DEPTH:
                raise SearchError("too deeply nested", "(", token.position)
            if (inner := self.peek()) is None or inner.kind == ")":
                raise SearchError("empty parentheses", "(", token.position)
            node = self.either(depth + 1)
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise SearchError("a parenthesis is not closed", "(", token.position)
            self.take()
            return node
        if token.kind in ("AND", "OR", ")"):
            raise SearchError(f"unexpected {token.text!r}", token.text, token.position)
        self.take()
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise SearchError(f"more than {MAX_TERMS} terms", token.text, token.position)
        return _term(token)


def _term(token: _Token) -> Node:
    text = token.text
    if token.quoted:
        return Text(text, phrase=True)
    match = _FIELD.fullmatch(text)
    if match is None:
        if text.count("*") > (1 if text.endswith("*") else 0):
            raise SearchError("'*' can only end a word", text, token.position)
        return Text(text.rstrip("*"), prefix=text.endswith("*"))
    name, op, value = match.groups()
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        value = value[1:-1]
    if name.startswith("attr."):
        pass
    elif name.lower() not in FIELDS:
        raise SearchError(f"unknown field {name!r} (fields: {', '.join(FIELDS)};"
                          " quote text to search for it)", text, token.position)  # fmt: skip
    else:
        name = name.lower()
    node = Field(name, op, value, text, token.position)
    _check(node)
    return node


def _bad(node: Field, message: str) -> SearchError:
    return SearchError(message, node.term, node.position)


def _check(node: Field) -> None:
    """Refuse a field term whose value cannot be compared (before any SQL is made)."""
    name, op, value = node.name, node.op, node.value
    if value == "":
        raise _bad(node, f"{name} needs a value after {op!r}")
    if name in NUMBER_FIELDS:
        _number(node)
    elif op in (">", ">=", "<", "<=") and not name.startswith("attr."):
        raise _bad(node, f"{name} is text: use {name}:value")
    elif name == "kind" and "*" not in value and value.lower() not in set(StepKind):
        raise _bad(node, f"unknown kind {value!r} (kinds: {', '.join(StepKind)})")
    elif name == "status" and value.lower() not in set(Status):
        raise _bad(node, f"unknown status {value!r} (statuses: {', '.join(Status)})")
    elif name.startswith("attr.") and op in (">", ">=", "<", "<="):
        try:
            float(value)
        except ValueError:
            raise _bad(node, f"{op} needs a number") from None


def _number(node: Field) -> int:
    """A number field's value as the integer its column stores."""
    value = node.value.strip()
    try:
        if node.name == "cost":
            return int(Decimal(value.removeprefix("$")).scaleb(12).to_integral_value())
        if node.name == "duration":
            number, unit = re.fullmatch(r"([0-9.eE+-]+)\s*([a-zµ]*)", value).groups()  # type: ignore[union-attr]
            if unit not in DURATION_UNITS and unit != "":
                raise _bad(node, f"unknown unit {unit!r} (units: {', '.join(DURATION_UNITS)})")
            return int(Decimal(number) * DURATION_UNITS[unit or "s"])
        number, suffix = re.fullmatch(r"([0-9.eE+-]+)([kKmM]?)", value).groups()  # type: ignore[union-attr]
        return int(Decimal(number) * COUNT_SUFFIXES[suffix])
    except SearchError:
        raise
    except (InvalidOperation, AttributeError, ValueError, OverflowError):
        examples = {"cost": "cost>0.01", "duration": "duration>2s", "tokens": "tokens>5000"}
        raise _bad(node, f"{node.name} needs a number, like {examples[node.name]}") from None


def parse(query: str) -> Node | None:
    """The syntax tree of a query (None for an empty one); SearchError if malformed."""
    if len(query) > MAX_QUERY:
        raise SearchError(f"the query is longer than {MAX_QUERY} characters")
    # FTS5 reads its query text as a C string: a NUL would end it mid-quote.
    return _Parser(query.replace("\x00", " ")).parse()


# -- SQL -----------------------------------------------------------------------------


def fts_string(node: Text) -> str:
    """A Text term as FTS5 query text: each word (or the phrase) one quoted FTS string,
    so that FTS operators typed by the user are searched for, not run."""
    quoted = '"' + node.text.replace('"', '""') + '"'
    return quoted + ("*" if node.prefix else "")


def like_pattern(value: str, contains: bool = False) -> str:
    """A user's value as a LIKE pattern with ESCAPE '\\': ``*`` is the only wildcard."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    escaped = escaped.replace("*", "%")
    return f"%{escaped}%" if contains else escaped


@dataclass
class SearchSQL:
    """A query as a WHERE condition over ``steps AS s`` and its parameters. ``match`` is
    FTS query text that every result must match (the AND of the top level's words), to
    drive the query from the index; the condition has the rest."""

    where: str
    params: list
    match: str | None = None
    # A condition over ``runs AS r`` that every run holding a matching step meets, from
    # the run's stored totals: a filter that matches few steps looks in those runs only.
    runs: tuple[str, list] | None = None


def compile_query(node: Node | None, fts: bool = True) -> SearchSQL:
    """SQL for a parsed query. With ``fts`` False (the index is off or not built), words
    are found by a LIKE scan of the indexed columns instead."""
    if node is None:
        return SearchSQL("1", [])
    search = _compile(node, fts)
    search.runs = _runs_condition(node)
    return search


def _compile(node: Node, fts: bool) -> SearchSQL:
    if fts and isinstance(node, Or) and all(isinstance(n, Text) and n.text.strip()
                                            for n in node.nodes):  # fmt: skip
        return SearchSQL("1", [], " OR ".join(fts_string(n) for n in node.nodes))  # type: ignore[arg-type]
    if fts:
        tops = node.nodes if isinstance(node, And) else (node,)
        texts = [n for n in tops if isinstance(n, Text) and n.text.strip()]
        if texts:
            rest = [n for n in tops if n not in texts]
            params: list = []
            where = " AND ".join(_sql(n, params, fts) for n in rest) or "1"
            return SearchSQL(where, params, " ".join(fts_string(n) for n in texts))
    params = []
    return SearchSQL(_sql(node, params, fts), params)


def _runs_condition(node: Node) -> tuple[str, list] | None:
    """What the run of a matching step must have, from the terms the query ANDs."""
    found = [c for term in (node.nodes if isinstance(node, And) else (node,))
             if isinstance(term, Field) and (c := _run_condition(term)) is not None]  # fmt: skip
    if not found:
        return None
    return " AND ".join(sql for sql, _ in found), [p for _, params in found for p in params]


RUN_TOTALS = {"tokens": "(r.input_tokens + r.output_tokens)", "duration": "(r.end_ns - r.start_ns)",
              "cost": "r.cost_pusd"}  # fmt: skip


def _run_condition(node: Field) -> tuple[str, list] | None:
    """A run's side of one field term: it lists the step's tool or model, it counts an
    error or an incident, its totals are at least the step's (tokens and cost are sums over
    its steps, its time spans theirs)."""
    name, op = node.name, node.op
    if name in ("tool", "model") and op == ":":
        # Runs list their steps' names with commas, a comma in a name stored as a space.
        pattern = like_pattern(node.value).replace(",", "_")
        return f"(',' || r.{name}s || ',') LIKE ? ESCAPE '\\'", [f"%,{pattern},%"]
    if name == "status" and op == ":" and node.value.lower() == Status.ERROR:
        return "r.error_count > 0", []
    if name == "finding" and op == ":":
        return "r.incident_count > 0", []
    if name == "kind" and op == ":" and _rare(kinds := _kinds(node.value)):
        # Found once, by the index of rare kinds.
        marks = ", ".join("?" * len(kinds))
        return f"r.id IN (SELECT run_id FROM steps WHERE kind IN ({marks}) AND {RARE_KINDS})", kinds
    if name in RUN_TOTALS and op in (">", ">=", "=", ":"):
        sql = f"{RUN_TOTALS[name]} {'>' if op == '>' else '>='} ?"
        if name == "cost":  # a sum is at least each part only if none is negative
            sql = f"({sql} OR r.id IN (SELECT run_id FROM steps WHERE cost_pusd < 0))"
        return sql, [_number(node)]
    return None


# The condition of the partial index ``steps_rare_kind`` (schema ``_v13``), word for word:
# SQLite uses that index only for a query that states it.
RARE_KINDS = "kind NOT IN ('llm', 'tool')"


def _rare(kinds: list[str]) -> bool:
    """None of these kinds is a model or tool call (95 % of steps)."""
    return not {StepKind.LLM, StepKind.TOOL} & set(kinds)


def _kinds(pattern: str) -> list[str]:
    """The step kinds a ``kind:`` value names (``*`` matching any run of characters)."""
    wanted = re.compile(re.escape(pattern.lower()).replace(r"\*", ".*"))
    return [kind for kind in StepKind if wanted.fullmatch(kind)]


def _sql(node: Node, params: list, fts: bool) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_sql(n, params, fts) for n in node.nodes) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_sql(n, params, fts) for n in node.nodes) + ")"
    if isinstance(node, Not):
        return f"NOT coalesce({_sql(node.node, params, fts)}, 0)"
    if isinstance(node, Text):
        return _text_sql(node, params, fts)
    return _field_sql(node, params)


def _text_sql(node: Text, params: list, fts: bool) -> str:
    if not node.text.strip():
        return "0"
    if fts:
        params.append(fts_string(node))
        return "s.rowid IN (SELECT rowid FROM steps_fts WHERE steps_fts MATCH ?)"
    pattern = like_pattern(node.text, contains=True)
    params.extend([pattern] * len(FTS_COLUMNS))
    return "(" + " OR ".join(f"s.{c} LIKE ? ESCAPE '\\'" for c in FTS_COLUMNS) + ")"


def _field_sql(node: Field, params: list) -> str:
    name, op, value = node.name, node.op, node.value
    negate = op == "!="
    if name in NUMBER_FIELDS:
        params.append(_number(node))
        sql_op = {":": "="}.get(op, op)
        return f"{NUMBER_FIELDS[name]} {sql_op} ?"
    if name.startswith("attr."):
        # A flat dotted key (OTLP's) or a path into nested objects (other formats').
        key = name[len("attr.") :].replace('"', "")
        params.extend(['$."' + key + '"', "$." + ".".join(f'"{p}"' for p in key.split("."))])
        value_sql = "coalesce(json_extract(s.attributes, ?), json_extract(s.attributes, ?)"
        value_sql += f", {ATTRIBUTE_COLUMNS[key]})" if key in ATTRIBUTE_COLUMNS else ")"
        if op in (">", ">=", "<", "<="):
            params.append(float(value))
            return f"{value_sql} {op} ?"
        params.append(like_pattern(value))
        sql = f"CAST({value_sql} AS TEXT) LIKE ? ESCAPE '\\'"
    elif name in TEXT_FIELDS:
        params.append(like_pattern(value))
        sql = f"{TEXT_FIELDS[name]} LIKE ? ESCAPE '\\'"
    elif name == "kind":
        kinds = _kinds(value)
        params.extend(kinds)
        sql = f"s.kind IN ({', '.join('?' * len(kinds))})" if kinds else "0"
        if kinds and _rare(kinds):  # found by the index of rare kinds
            sql = f"({sql} AND s.{RARE_KINDS})"
    elif name == "status":
        params.append(like_pattern(value.lower()))
        sql = "s.status LIKE ? ESCAPE '\\'"
    elif name == "session":
        params.append(like_pattern(value))
        sql = "s.run_id IN (SELECT id FROM runs WHERE session_id LIKE ? ESCAPE '\\')"
    else:  # finding: the steps of an incident whose headline or evidence is of this kind
        params.extend([like_pattern(value)] * 2)
        sql = (
            "EXISTS (SELECT 1 FROM incidents AS i, json_each(i.step_ids) AS j"
            " WHERE i.run_id = s.run_id AND j.value = s.id AND (i.kind LIKE ? ESCAPE '\\'"
            " OR EXISTS (SELECT 1 FROM json_each(i.evidence) AS e"
            " WHERE json_extract(e.value, '$[0]') LIKE ? ESCAPE '\\')))"
        )
    return f"NOT coalesce({sql}, 0)" if negate else sql
