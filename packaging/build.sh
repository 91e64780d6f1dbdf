#!/usr/bin/env bash
# Build the one-folder PyInstaller bundle and check it the way CI checks the wheel:
# run its --version and --self-test from outside the source tree.
#   bash packaging/build.sh        -> dist/tracedesk/tracedesk
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv build/bundle-venv
build/bundle-venv/bin/python -m pip install --quiet --upgrade pip
build/bundle-venv/bin/python -m pip install --quiet . "pyinstaller>=6.10"
build/bundle-venv/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
    packaging/tracedesk.spec
bundle="$PWD/dist/tracedesk/tracedesk"
cd /
QT_QPA_PLATFORM=offscreen "$bundle" --version
QT_QPA_PLATFORM=offscreen "$bundle" --self-test
echo "bundle ok: $bundle"
