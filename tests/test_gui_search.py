"""The step search bar, the runs library's step search and the session view (pytest-qt)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tracedesk.core.store import Store
from tracedesk.ui.models import MATCH_ROLE, STEP_ID_ROLE

from .test_gui import open_run


def search(window, qtbot, query: str) -> None:
    window.step_search.field.setText(query)
    window.step_search.timer.stop()
    window.match_ids = {"(pending)"}
    window.step_search.search.emit(query)
    qtbot.waitUntil(lambda: window.match_ids != {"(pending)"} and window.index_task is None,
                    timeout=10_000)  # fmt: skip


def visible_ids(window) -> list[str]:
    model, found = window.tree_model, []

    def walk(parent):
        while model.canFetchMore(parent):
            model.fetchMore(parent)
        for row in range(model.rowCount(parent)):
            index = model.index(row, 0, parent)
            found.append(index.data(STEP_ID_ROLE))
            walk(index)

    from PySide6.QtCore import QModelIndex

    walk(QModelIndex())
    return found


def test_step_search_highlights_filters_and_walks_matches(window, qtbot, qtmodeltester):
    run_id = open_run(window, qtbot, lambda r: "search_docs" in r.tools or r.tools)
    tool = next(r for r in window.runs.model.rows if r.id == run_id).tools[0]
    with Store(window.db_path) as store:
        expected = store.matching_step_ids(run_id, f"tool:{tool}")
        every = [r[0] for r in store.step_index(run_id)]
    assert expected
    search(window, qtbot, f"tool:{tool}")
    assert window.match_ids == expected
    model = window.tree_model
    # Highlight: every step stays, the matches are marked (and on the timeline).
    assert sorted(visible_ids(window)) == sorted(every)
    marked = {model.index_of(s).data(STEP_ID_ROLE) for s in expected
              if model.index_of(s).data(MATCH_ROLE)}  # fmt: skip
    assert marked == expected
    assert model.index_of(every[0]).data(MATCH_ROLE) == (every[0] in expected)
    assert "matches" in window.timeline._overlay_items
    # F3 walks the matches in start order, Shift+F3 back, wrapping around.
    order = [model.steps[n].id for n in model.match_order()]
    window.tree.setCurrentIndex(model.index(0, 0))
    seen = []
    for _ in order:
        window.go_to_match(1)
        seen.append(window.tree.currentIndex().data(STEP_ID_ROLE))
    assert seen == order if order[0] != every[0] else seen[-1] == order[-1]
    window.go_to_match(1)
    assert window.tree.currentIndex().data(STEP_ID_ROLE) == order[0]
    window.go_to_match(-1)
    assert window.tree.currentIndex().data(STEP_ID_ROLE) == order[-1]
    assert window.step_search.count.text() == f"{len(order)} of {len(order)}"
    # Filter: only the matches and their ancestors remain.
    window.step_search.mode.setCurrentIndex(1)
    shown = visible_ids(window)
    assert set(expected) <= set(shown) < set(every)
    by_id = {s.id: s for s in model.steps}
    for step_id in shown:
        if step_id not in expected:  # an ancestor of a match
            assert any(_ancestor(model, step_id, m) for m in expected)
    qtmodeltester.check(model)
    # An empty search shows every step again, unmarked.
    search(window, qtbot, "")
    assert sorted(visible_ids(window)) == sorted(every) and not model.matched
    assert by_id


def _ancestor(model, ancestor_id: str, step_id: str) -> bool:
    node = model.by_id[step_id]
    while node >= 0:
        node = model.steps[node].parent
        if node >= 0 and model.steps[node].id == ancestor_id:
            return True
    return False


def test_a_bad_query_says_which_term(window, qtbot):
    open_run(window, qtbot)
    window.step_search.field.setText("kind:llm cost>lots")
    window.step_search.search.emit("kind:llm cost>lots")
    qtbot.waitUntil(lambda: window.step_search.count.text() == "bad query", timeout=10_000)
    assert "'cost>lots'" in window.step_search.count.toolTip()


def test_runs_library_finds_runs_by_their_steps(window, qtbot):
    with Store(window.db_path) as store:
        store.index_steps()
        wanted = store.find_run_ids("status:error")
    assert wanted and len(wanted) < window.runs.model.rowCount()
    window.runs.in_steps.setChecked(True)
    window.runs.search.setText("status:error")
    window.runs.step_query_timer.timeout.emit()
    proxy = window.runs.proxy
    qtbot.waitUntil(lambda: proxy.rowCount() == len(wanted), timeout=10_000)
    assert {proxy.index(r, 0).data(Qt.ItemDataRole.UserRole + 2) for r in
            range(proxy.rowCount())} == wanted  # fmt: skip
    window.runs.in_steps.setChecked(False)
    assert proxy.rowCount() < window.runs.model.rowCount()  # plain text filter now
    window.runs.search.clear()
    assert proxy.rowCount() == window.runs.model.rowCount()


def test_session_view_lists_a_sessions_runs_in_order(window, qtbot):
    run_id = open_run(window, qtbot, lambda r: r.session_id)
    session_id = next(r.session_id for r in window.runs.model.rows if r.id == run_id)
    with qtbot.waitSignal(window.view_opened, timeout=10_000) as opened:
        window.show_session()
    view = opened.args[0]
    qtbot.addWidget(view)
    with Store(window.db_path) as store:
        runs = store.session_runs(session_id)
        session = store.session(session_id)
    assert view.run_ids() == [r.id for r in runs] and len(runs) == session.runs > 1
    assert f"Session {session_id}: {session.runs} runs" in view.summary.text()
    starts = [r.start_ns for r in runs]
    assert starts == sorted(starts)


def test_a_search_index_that_cannot_be_built_is_said_once_and_words_still_found(
    window, qtbot, monkeypatch
):
    def refuse(self, *args):
        raise OSError("disk full")

    monkeypatch.setattr(Store, "index_steps", refuse)
    run_id = open_run(window, qtbot, lambda r: r.tools)
    tool = next(r for r in window.runs.model.rows if r.id == run_id).tools[0]
    search(window, qtbot, tool)
    qtbot.waitUntil(lambda: window.last_message is not None)
    assert "Cannot build the search index" in window.last_message.windowTitle()
    assert window.index_failed and window.match_ids  # found by a LIKE scan instead
    window.last_message = None
    search(window, qtbot, tool)
    assert window.last_message is None and window.match_ids  # not tried again
