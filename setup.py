"""The import's hot modules compiled to C with mypyc, when a wheel is built (``pip install .``).

They are plain, type-checked Python, and stay so: an editable install (``pip install -e .``)
runs them as they are, and so does a wheel built where compiling fails (no C compiler) or
with ``TRACEDESK_COMPILE=0``. Compiled, a worker process maps and analyses an OTLP span in
about two thirds of the CPU, and 1M spans import in about 18 s instead of 25 s
(bench/README.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# model.py too: its Run and Step become native classes, whose fields read and write without
# a lookup, and which refuse a value of another type with a TypeError. So importers make a
# source's numbers text (``importers.base.as_text``) before they set a field.
COMPILED = [
    "tracedesk/core/model.py",
    "tracedesk/core/tree.py",
    "tracedesk/core/runs.py",
    "tracedesk/core/ingest.py",
    "tracedesk/core/reader_process.py",
    "tracedesk/core/store/rows.py",
    "tracedesk/core/analysis/cost.py",
    "tracedesk/core/analysis/loops.py",
    "tracedesk/core/analysis/pricing.py",
    "tracedesk/core/importers/base.py",
    "tracedesk/core/importers/semconv.py",
    "tracedesk/core/importers/otlp.py",
    "tracedesk/core/importers/langsmith.py",
    "tracedesk/core/importers/langfuse.py",
    "tracedesk/core/importers/openai_agents.py",
    "tracedesk/core/importers/native.py",
]


class OptionalBuildExt(build_ext):
    """Build every compiled module or none: without a C compiler the wheel is pure Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python headers …
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            print(f"tracedesk: not compiled, running as plain Python ({exc})", file=sys.stderr)


def _extensions() -> list:
    if os.environ.get("TRACEDESK_COMPILE") == "0" or "bdist_wheel" not in sys.argv:
        return []  # an editable install, an sdist: the sources as they are
    try:
        from mypyc.build import mypycify

        return mypycify(COMPILED, group_name="tracedesk_compiled")
    except (Exception, SystemExit) as exc:  # no mypyc, or it cannot compile
        print(f"tracedesk: not compiled, running as plain Python ({exc})", file=sys.stderr)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
