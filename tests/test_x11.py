"""A session in a real X server (Xvfb) with real input: keys, focus and a file dragged onto
the window with the X drag-and-drop protocol (tests/x11_session.py drives it).

``.ci/run`` installs Xvfb and requires this test (TRACEDESK_REQUIRE_X11=1); elsewhere it is
skipped when Xvfb is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REAL_FIXTURES

HERE = Path(__file__).parent


@pytest.fixture
def x_display():
    if shutil.which("Xvfb") is None:
        if os.environ.get("TRACEDESK_REQUIRE_X11"):
            pytest.fail("Xvfb is required here (TRACEDESK_REQUIRE_X11) but not installed")
        pytest.skip("Xvfb is not installed")
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,), stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    with os.fdopen(read) as chosen:
        number = chosen.readline().strip()  # Xvfb writes its display number once it is up
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


def test_keys_focus_and_a_real_drag_and_drop(x_display, tmp_path):
    trace = tmp_path / "dropped.json"
    shutil.copy(REAL_FIXTURES / "langfuse" / "agent-prism_langfuse-1.json", trace)
    env = {**os.environ, "DISPLAY": x_display, "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run(
        [sys.executable, str(HERE / "x11_session.py"), str(tmp_path), str(trace)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    checks = [line for line in done.stdout.splitlines() if line.startswith("ok: ")]
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(checks) == 11 and "ok: a dropped file is imported" in checks
