"""Plain-text formatting shared by the CLI and the GUI: durations, counts, tables, trees."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

from tracedesk.core.model import Step
from tracedesk.core.tree import children_by_parent


def format_duration(ns: int | None) -> str:
    if ns is None:
        return "-"
    seconds = ns / 1e9
    if seconds < 1:
        return f"{ns / 1e6:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)} min {seconds:02.0f} s"


def format_count(n: int | None) -> str:
    if not n:
        return "0" if n == 0 else "-"
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


# Characters that would act rather than show: C0 and C1 controls (terminal escapes, line
# clears), DEL, and the bidirectional controls that reorder the text around them.
_ACTING = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (9, 10)},
    **{c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                    *range(0x2066, 0x206A))},
    # Not characters at all: lone surrogates (from JSON escapes) and the non-characters
    # that XML refuses.
    **{c: f"\\u{c:04x}" for c in (*range(0xD800, 0xE000), 0xFFFE, 0xFFFF)},
}  # fmt: skip


def visible(text: str) -> str:
    """Trace text made safe to show: controls and bidi overrides spelled out (``\\x1b``,
    ``\\u202e``), so that they neither drive a terminal nor reorder what is around them.
    Newlines and tabs stay."""
    return text.translate(_ACTING)


def shorten(text: str | None, width: int) -> str:
    """One line of at most ``width`` characters, with controls made visible."""
    text = " ".join(visible((text or "")[: width * 4]).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = frozenset()
) -> str:
    """A plain text table; columns whose index is in ``right`` are right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def walk_tree(steps: Sequence[Step]) -> Iterator[tuple[int, Step]]:
    """(depth, step) in depth-first order, children by start time; steps ordered by start."""
    children = children_by_parent(steps)
    stack = [(0, s) for s in reversed(children[None])]
    while stack:
        depth, step = stack.pop()
        yield depth, step
        stack.extend((depth + 1, c) for c in reversed(children.get(step.id, ())))


def plural(count: int, noun: str) -> str:
    """'1 step', '2 steps'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def incidents_text(count: int, worst_severity: str | None) -> str:
    """'2 incidents · error', or '' for a run without any."""
    if not count:
        return ""
    return f"{plural(count, 'incident')} · {worst_severity}"
