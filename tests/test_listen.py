"""File → Listen for traces: spans sent by the real OpenTelemetry SDK appear in the open
window, and an open run grows as its spans arrive."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from PySide6.QtCore import QSettings, QThreadPool

from tracedesk.core.ingest import import_file
from tracedesk.core.store import Store
from tracedesk.ui.main_window import MainWindow

from .conftest import FIXTURES


def chat(tracer, turn: int) -> None:
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.usage.input_tokens", 100 + turn)
        span.set_attribute("gen_ai.usage.output_tokens", 10)


def test_listening_window_shows_runs_as_they_arrive(qtbot, tmp_path: Path) -> None:
    db = tmp_path / "gui.db"
    with Store(db) as store:
        import_file(store, FIXTURES / "formats" / "otlp_genai.jsonl")
        before = store.counts()["runs"]
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(db, settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: len(window.runs.model.rows) == before)
    live = window.live_capture
    live.port = 0  # any free port: tests never take a fixed one
    file_menu = window.menuBar().actions()[0].menu()
    assert live.action in file_menu.actions() and live.action.isCheckable()
    live.action.trigger()
    assert live.listening and live.indicator.isVisible()
    address = live.session.receiver.address
    assert f"Listening on {address}" in live.indicator.text()

    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://{address}/v1/traces")))  # fmt: skip
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent helper") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        run_id = f"{root.get_span_context().trace_id:032x}"
        chat(tracer, 0)
        chat(tracer, 1)
        # The run appears in the library while its root is still open.
        qtbot.waitUntil(lambda: any(r.id == run_id for r in window.runs.model.rows), timeout=10_000)
        assert window.runs.select_run(run_id)
        qtbot.waitUntil(lambda: window.current_run == run_id)
        qtbot.waitUntil(lambda: len(window.tree_model.steps) == 2, timeout=10_000)
        chat(tracer, 2)
        # The open run grows.
        qtbot.waitUntil(lambda: len(window.tree_model.steps) == 3, timeout=10_000)
    qtbot.waitUntil(lambda: len(window.tree_model.steps) == 4, timeout=10_000)
    assert "4 spans" in live.indicator.text() and "0 errors" in live.indicator.text()
    provider.shutdown()
    window.close()  # what is still queued is written and the run analysed before it goes
    QThreadPool.globalInstance().waitForDone(10_000)
    with Store(db) as store:
        run = store.get_run(run_id)
        assert run is not None and run.name == "invoke_agent helper"
        assert run.step_count == 4 and run.input_tokens == 303 and run.cost is not None
        assert run.status == "ok"
        assert store.counts()["runs"] == before + 1
