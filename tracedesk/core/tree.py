"""The step tree of one run: children by parent, depth, and repair of broken parent links."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tracedesk.core.model import Step, decoded

LOST_PARENT_KEY = "tracedesk.lost_parent_id"


def children_by_parent(steps: Iterable[Step]) -> dict[str | None, list[Step]]:
    """Steps grouped under their parent's id, in the order given; a step whose parent is not
    among the steps is listed under None, with the roots."""
    steps = list(steps)
    ids = {step.id for step in steps}
    children: dict[str | None, list[Step]] = defaultdict(list)
    for step in steps:
        children[step.parent_id if step.parent_id in ids else None].append(step)
    return children


def repair(steps: Iterable[Step]) -> list[tuple[Step, str, str]]:
    """Set every step's depth. A step whose parent is missing, or whose parent links form a
    cycle, becomes a root; its lost parent id is kept in its attributes. Returns
    (step, reason, lost parent id) for each step that was repaired."""
    by_id = {step.id: step for step in steps}
    depth: dict[str, int] = {}
    repaired: list[tuple[Step, str, str]] = []
    for step_id, step in by_id.items():
        parent = step.parent_id
        if parent is None:
            depth[step_id] = 0
            continue
        if parent in depth:  # placed already, so not on a cycle through this step
            depth[step_id] = depth[parent] + 1
            continue
        chain: list[str] = []
        on_chain: set[str] = set()
        current = step_id
        while current not in depth:
            step = by_id[current]
            if current in on_chain:  # a parent cycle closes here: cut it at this step
                repaired.append((step, "is in a parent cycle", _detach(step)))
                depth[current] = 0
                chain = chain[: chain.index(current)]
                break
            if step.parent_id is not None and step.parent_id not in by_id:
                repaired.append((step, "has a missing parent", _detach(step)))
            if step.parent_id is None:
                depth[current] = 0
                break
            chain.append(current)
            on_chain.add(current)
            current = step.parent_id
        base = depth[current]
        for node in reversed(chain):
            base += 1
            depth[node] = base
    for step_id, step in by_id.items():
        step.depth = depth[step_id]
    return repaired


def reattach(steps: Iterable[Step]) -> int:
    """Give back their parent to steps that ``repair`` detached for a missing parent, when
    that parent is now among the steps (a live exporter sends children before their parent).
    Returns how many were reattached; ``repair`` then cuts any cycle again."""
    steps = list(steps)
    ids = {step.id for step in steps}
    count = 0
    for step in steps:
        if step.parent_id is None and LOST_PARENT_KEY in step.attributes:
            attributes = dict(decoded(step.attributes))
            lost = attributes.pop(LOST_PARENT_KEY, None)
            if isinstance(lost, str) and lost in ids and lost != step.id:
                step.parent_id, step.attributes = lost, attributes
                count += 1
    return count


def _detach(step: Step) -> str:
    lost = step.parent_id or ""
    step.parent_id = None
    step.attributes = decoded(step.attributes)
    step.attributes[LOST_PARENT_KEY] = lost
    return lost
