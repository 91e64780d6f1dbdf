"""Re-record tests/fixtures/recorded/ with the real SDKs, offline.

Each recorder runs in its own virtual environment with the pins of its pyproject extra
(the SDKs' dependencies conflict: openai-agents wants openai 3, openai-v2 wants openai 2).
No network is used beyond the package index and 127.0.0.1: the models are scripted and the
backends are capture servers inside the recorders.

    python tools/record_sdk_traces.py                 # all five
    python tools/record_sdk_traces.py langfuse otel   # some
    python tools/record_sdk_traces.py --venvs DIR     # keep the environments elsewhere

After recording, run the tests: each file must import with the counts its recorder wrote.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name -> (pyproject extra, recorder script, output folder)
RECORDERS = {
    "agents": ("record-agents", "openai_agents_sdk.py", "openai-agents"),
    "otel": ("record-otel", "otel_genai.py", "otel-genai"),
    "langfuse": ("record-langfuse", "langfuse_sdk.py", "langfuse-otlp"),
    "langsmith": ("record-langsmith", "langsmith_sdk.py", "langsmith"),
    "langsmith-anthropic": (
        "record-langsmith-anthropic",
        "langsmith_wrap_anthropic.py",
        "langsmith",
    ),
}


def record(name: str, venvs: Path) -> None:
    extra, script, folder = RECORDERS[name]
    venv = venvs / name
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"{ROOT}[{extra}]"], check=True)
    subprocess.run([str(python), str(ROOT / "tools" / "record" / script)], check=True, cwd=ROOT)
    print(f"{name}: wrote tests/fixtures/recorded/{folder}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdks", nargs="*", help=f"any of {', '.join(RECORDERS)} (default: all)")
    parser.add_argument("--venvs", type=Path, default=Path(tempfile.gettempdir()) / "td-record")
    args = parser.parse_args()
    unknown = set(args.sdks) - set(RECORDERS)
    if unknown:
        parser.error(
            f"unknown SDK {', '.join(sorted(unknown))}; choose from {', '.join(RECORDERS)}"
        )
    for name in args.sdks or RECORDERS:
        record(name, args.venvs)


if __name__ == "__main__":
    main()
