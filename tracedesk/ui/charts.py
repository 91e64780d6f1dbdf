"""Cost charts: cost by tool, model and kind (for a run or a selection of runs), and the
cumulative cost along the run's timeline with the loop incidents shaded."""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QWidget

from tracedesk.core.analysis.cost import cumulative_cost
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.export import format_usd
from tracedesk.core.store import Store
from tracedesk.core.summary import CostSummary, summarize_many
from tracedesk.core.text import shorten
from tracedesk.ui.theme import KIND_COLORS, LOOP_HIGHLIGHT

GROUPS = ("tool", "model", "kind")
BAR_COLOR = "#4C78A8"
MAX_BARS = 12


@dataclass
class ChartData:
    summaries: dict[str, CostSummary]
    cumulative: list[tuple[float, float]]  # (seconds since start, USD so far)
    loop_spans: list[tuple[float, float]]  # seconds since start


def chart_data(db_path: str, run_ids: list[str], pricing: Pricing) -> ChartData:
    """Everything the charts draw, computed off the UI thread on its own connection."""
    with Store(db_path) as store:
        summaries = summarize_many(store, pricing, run_ids, GROUPS)
        cumulative: list[tuple[float, float]] = []
        spans: list[tuple[float, float]] = []
        if len(run_ids) == 1:
            run = store.find_run(run_ids[0])
            steps = store.steps(run.id, payloads=False)
            origin = min((s.start_ns for s in steps if s.start_ns is not None), default=0)
            cumulative = [((t - origin) / 1e9, float(c)) for t, c in cumulative_cost(steps)]
            by_id = {s.id: s for s in steps}
            for incident in store.incidents(run.id):
                first = by_id.get(incident.first_step or "")
                last = by_id.get(incident.last_step or "")
                if first and last and first.start_ns is not None:
                    end = last.end_ns if last.end_ns is not None else last.start_ns
                    spans.append(
                        ((first.start_ns - origin) / 1e9, ((end or first.start_ns) - origin) / 1e9)
                    )
    return ChartData(summaries, cumulative, spans)


class CostChartsView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QGridLayout(self)
        self.plots: dict[str, pg.PlotWidget] = {}
        for position, name in enumerate((*GROUPS, "cumulative")):
            plot = pg.PlotWidget(
                title=f"Cost by {name}" if name != "cumulative" else "Cumulative cost"
            )
            plot.getPlotItem().hideButtons()
            plot.setMouseEnabled(x=False, y=False)
            self.plots[name] = plot
            layout.addWidget(plot, position // 2, position % 2)
        self.plots["cumulative"].setMouseEnabled(x=True, y=False)
        self.plots["cumulative"].setLabel("bottom", "seconds since the run started")
        self.plots["cumulative"].setLabel("left", "USD")

    def show_data(self, data: ChartData | None) -> None:
        for plot in self.plots.values():
            plot.clear()
        if data is None:
            return
        for name in GROUPS:
            self._bars(self.plots[name], data.summaries[name], name)
        plot = self.plots["cumulative"]
        for start, end in data.loop_spans:
            color = pg.mkColor(LOOP_HIGHLIGHT)
            color.setAlpha(60)
            plot.addItem(
                pg.LinearRegionItem((start, max(end, start + 1e-3)), movable=False, brush=color)
            )
        if data.cumulative:
            xs = [0.0] + [x for x, _ in data.cumulative]
            ys = [0.0] + [y for _, y in data.cumulative]
            plot.plot(
                xs, ys, stepMode=None, pen=pg.mkPen(BAR_COLOR, width=2), symbol="o", symbolSize=4
            )
        plot.setTitle("Cumulative cost" + ("" if data.cumulative else " (select one run)"))

    def _bars(self, plot: pg.PlotWidget, summary: CostSummary, name: str) -> None:
        rows = [r for r in summary.rows if r.cost > 0][:MAX_BARS]
        plot.setTitle(f"Cost by {name} — total {format_usd(summary.total.cost)}")
        if not rows:
            return
        costs = [float(r.cost) for r in rows]
        colors = [KIND_COLORS.get(r.key, BAR_COLOR) if name == "kind" else BAR_COLOR for r in rows]
        ys = list(range(len(rows)))
        plot.addItem(
            pg.BarGraphItem(x0=[0] * len(rows), width=costs, y=ys, height=0.6, brushes=colors)
        )
        axis = plot.getAxis("left")
        axis.setTicks([[(i, shorten(r.label or r.key, 22)) for i, r in enumerate(rows)]])
        plot.getPlotItem().invertY(True)
        plot.setXRange(0, max(costs) * 1.15, padding=0)
        plot.setYRange(-0.6, len(rows) - 0.4, padding=0)
        for i, row in enumerate(rows):
            label = pg.TextItem(
                format_usd(row.cost), anchor=(0, 0.5), color=self.palette().text().color()
            )
            label.setPos(costs[i], i)
            plot.addItem(label)
