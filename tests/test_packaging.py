"""The wheel carries the resources, and the installed commands work."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tracedesk import __version__
from tracedesk.resources import demo_traces, resource

ROOT = Path(__file__).parents[1]


def test_resources_are_read_through_the_package():
    assert resource("pricing.json").is_file() and resource("loop_rules.toml").is_file()
    assert demo_traces().is_file() and resource("icons", "tracedesk.svg").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, env={**os.environ, "TRACEDESK_COMPILE": "0"},  # its contents, in seconds
    )  # fmt: skip
    [built] = out.glob("tracedesk-*.whl")
    return built


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("tracedesk/data/pricing.json", "tracedesk/data/loop_rules.toml",
                   "tracedesk/data/samples/demo.tracedesk.jsonl", "tracedesk/data/icons/tracedesk.svg",
                   "tracedesk/data/icons/tracedesk-256.png", "tracedesk/ui/main_window.py"):  # fmt: skip
        assert needed in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "tracedesk = tracedesk.cli:main" in text
        and "tracedesk-gui = tracedesk.cli:gui_entry" in text
    )
    assert not any(n.startswith("tests/") for n in names)


def test_version_and_self_test_commands():
    version = subprocess.run([sys.executable, "-m", "tracedesk", "--version"], capture_output=True,
                             text=True, check=True)  # fmt: skip
    assert version.stdout.strip() == f"tracedesk {__version__}"
    done = subprocess.run([sys.executable, "-m", "tracedesk", "--self-test"], capture_output=True,
                          text=True, timeout=120, cwd="/")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "self-test: ok" in done.stdout


def test_desktop_files_name_the_commands():
    desktop = (ROOT / "packaging" / "io.github.tracedesk.Tracedesk.desktop").read_text()
    assert "Exec=tracedesk-gui %F" in desktop
    metainfo = (ROOT / "packaging" / "io.github.tracedesk.Tracedesk.metainfo.xml").read_text()
    assert f'release version="{__version__}"' in metainfo


def test_every_package_ships_in_the_wheel():
    """pyproject lists packages by name: a new package folder must be listed too."""
    import tomllib

    root = Path(__file__).parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])  # fmt: skip
    found = {
        ".".join(p.parent.relative_to(root).parts)
        for p in (root / "tracedesk").rglob("__init__.py")
    }
    assert found <= listed, found - listed
