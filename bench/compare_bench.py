"""Aligning two 10k-step runs of the same request (target: under a second).

python bench/compare_bench.py [--steps 10000]
"""

from __future__ import annotations

import argparse
import random
import time
from decimal import Decimal

from tracedesk.core.analysis.compare import compare
from tracedesk.core.model import Run, Step

MS = 1_000_000


def make_run(run_id: str, steps: int, seed: int) -> tuple[Run, list[Step]]:
    """An agent with alternating model and tool calls; the seed adds a few retries."""
    rng = random.Random(seed)
    out = [
        Step(
            id="root", run_id=run_id, kind="agent", name="Agent", start_ns=0, end_ns=steps * 20 * MS
        )
    ]
    clock = 1
    for i in range(steps - 1):
        if i % 2:
            args = {"q": f"page {i % 400}"}
            repeat = 2 if rng.random() < 0.002 else 1
        else:
            args, repeat = None, 1
        for _ in range(repeat):
            kind = "tool" if args else "llm"
            out.append(Step(id=f"{run_id}-{len(out)}", run_id=run_id, parent_id="root", kind=kind,
                            name="search" if args else "chat gpt-4o", tool_name="search" if args else None,
                            tool_args=args, model=None if args else "gpt-4o", start_ns=clock * MS,
                            end_ns=(clock + 10) * MS, input_tokens=100, cost=Decimal("0.001")))  # fmt: skip
            clock += 11
    return Run(id=run_id, name=run_id, start_ns=0, end_ns=clock * MS), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    run_a, steps_a = make_run("a", args.steps, 1)
    run_b, steps_b = make_run("b", args.steps, 2)
    started = time.perf_counter()
    result = compare(run_a, steps_a, run_b, steps_b)
    elapsed = time.perf_counter() - started
    print(f"aligned {len(steps_a):,} vs {len(steps_b):,} steps in {elapsed * 1000:.0f} ms"
          f" (target < 1000 ms); {result.counts()}")  # fmt: skip


if __name__ == "__main__":
    main()
