"""One session in a real X server, driven by real input: run by test_x11.py under Xvfb.

Keys and the mouse go through the X server (the XTEST extension, as xdotool does), so Qt
receives them as it would from a user: focus, shortcuts and drag and drop included. A
file is dragged from a drag source window onto the main window with the X drag-and-drop
protocol. Prints one line per check and exits 0 when all hold.

    python tests/x11_session.py FOLDER TRACE_FILE
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QSettings, Qt, QUrl
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QLabel
from Xlib import XK, X, display
from Xlib.ext import xtest

from tracedesk.ui.app import application, fill_with_demo
from tracedesk.ui.main_window import MainWindow

X_DISPLAY = display.Display()


def pump(app, seconds: float = 0.15) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)


def wait_for(app, condition, what: str, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"FAILED: {what}")
        pump(app, 0.02)
    print(f"ok: {what}", flush=True)


def key(app, name: str, *modifiers: str) -> None:
    """Press and release a key, with modifiers held, through the X server."""
    codes = [X_DISPLAY.keysym_to_keycode(XK.string_to_keysym(m)) for m in modifiers]
    code = X_DISPLAY.keysym_to_keycode(XK.string_to_keysym(name))
    for c in codes:
        xtest.fake_input(X_DISPLAY, X.KeyPress, c)
    xtest.fake_input(X_DISPLAY, X.KeyPress, code)
    xtest.fake_input(X_DISPLAY, X.KeyRelease, code)
    for c in reversed(codes):
        xtest.fake_input(X_DISPLAY, X.KeyRelease, c)
    X_DISPLAY.sync()
    pump(app)


def type_text(app, text: str) -> None:
    for char in text:
        key(app, char)


def move(x: int, y: int, connection=X_DISPLAY) -> None:
    xtest.fake_input(connection, X.MotionNotify, x=x, y=y)
    connection.sync()


def main(folder: Path, trace: Path) -> int:
    app = application()
    if app.platformName() != "xcb":
        raise SystemExit(f"FAILED: running on {app.platformName()!r}, not a real X server")
    db = folder / "x11.db"
    fill_with_demo(db)
    window = MainWindow(db, QSettings(str(folder / "x11.ini"), QSettings.Format.IniFormat))
    window.setGeometry(0, 0, 1280, 720)
    window.show()
    window.raise_()
    window.activateWindow()
    center = window.mapToGlobal(window.rect().center())
    move(center.x(), center.y())  # without a window manager, focus follows the pointer
    wait_for(app, window.isActiveWindow, "the window is active")
    wait_for(app, lambda: len(window.runs.model.rows) == 30, "the runs are listed")

    key(app, "f", "Control_L")
    wait_for(app, window.runs.search.hasFocus, "Ctrl+F puts the cursor in the search")
    type_text(app, "oslo")
    proxy = window.runs.proxy
    wait_for(app, lambda: 0 < proxy.rowCount() < 30
             and all("Oslo" in proxy.index(r, 1).data() for r in range(proxy.rowCount())),
             "typing filters the runs")  # fmt: skip
    key(app, "a", "Control_L")
    key(app, "BackSpace")
    wait_for(app, lambda: proxy.rowCount() == len(window.runs.model.rows), "the search clears")

    run_id = next(r.id for r in window.runs.model.rows if r.worst_severity == "error")
    window.runs.select_run(run_id)
    wait_for(app, lambda: window.current_run == run_id, "a run with a failed step is open")
    key(app, "2", "Alt_L")
    wait_for(app, window.tree.hasFocus, "Alt+2 moves to the steps")
    key(app, "F8")
    model = window.tree_model
    wait_for(app, lambda: window.tree.currentIndex().isValid()
             and model.steps[model._node(window.tree.currentIndex())].status == "error",
             "F8 goes to the first failed step")  # fmt: skip
    key(app, "F7")
    wait_for(app, lambda: window.incidents.currentIndex().row() == 0
             and bool(model.highlighted), "F7 chooses the first incident")  # fmt: skip

    # Drag a file from another window onto this one, with the X drag-and-drop protocol.
    source = QLabel(f"drag me: {trace.name}")
    source.setGeometry(900, 620, 300, 60)
    source.setWindowFlag(Qt.WindowType.WindowStaysOnTopHint)
    source.show()
    pump(app, 0.5)
    start = source.mapToGlobal(source.rect().center())
    target = window.tree.mapToGlobal(window.tree.rect().center())

    def drag_pointer() -> None:  # runs while QDrag.exec spins its own event loop
        connection = display.Display()
        time.sleep(0.3)
        for step in range(1, 31):
            x = start.x() + (target.x() - start.x()) * step // 30
            y = start.y() + (target.y() - start.y()) * step // 30
            move(x, y, connection)
            time.sleep(0.03)
        time.sleep(0.3)
        xtest.fake_input(connection, X.ButtonRelease, 1)
        connection.sync()

    move(start.x(), start.y())
    xtest.fake_input(X_DISPLAY, X.ButtonPress, 1)
    X_DISPLAY.sync()
    pump(app, 0.2)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(trace))])
    drag = QDrag(source)
    drag.setMimeData(mime)
    drag.setHotSpot(QPoint(5, 5))
    mover = threading.Thread(target=drag_pointer)
    mover.start()
    drag.exec(Qt.DropAction.CopyAction)
    mover.join()
    wait_for(app, lambda: bool(window.last_import) and window.import_task is None,
             "a dropped file is imported", 30)  # fmt: skip
    result = window.last_import[-1]
    if Path(result.path) != trace or result.runs != 1:
        raise SystemExit(f"FAILED: the drop imported {result.path} ({result.runs} runs)")
    print("ok: the dropped file's run is in the library", flush=True)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
