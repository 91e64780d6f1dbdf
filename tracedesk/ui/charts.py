"""Cost charts: cost by tool, model and kind (for a run or a selection of runs), the cost
wasted by each incident, and the cumulative cost along the run's timeline with the
incidents shaded. Axes read in plain dollars; each chart keeps a readable height, and the
charts scroll when the dock is smaller than that."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QScrollArea, QWidget

from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.export import format_usd
from tracedesk.core.store import Store
from tracedesk.core.summary import CostSummary, summarize_many
from tracedesk.core.text import format_duration, plural, shorten
from tracedesk.ui.theme import INCIDENT_COLOR, KIND_COLORS

GROUPS = ("tool", "model", "kind")
BAR_COLOR = "#4C78A8"
MAX_BARS = 12
MAX_DOTS = 300  # points of the cumulative cost line drawn with a dot each
CHART_HEIGHT, CHART_WIDTH = 200, 400  # below these a chart's labels overlap


@dataclass
class ChartData:
    summaries: dict[str, CostSummary]
    cumulative: list[tuple[float, float]]  # (seconds since start, USD so far)
    loop_spans: list[tuple[float, float]]  # seconds since start
    # Per incident of the run: its label, wasted USD and wasted seconds.
    waste: list[tuple[str, float, float]] = field(default_factory=list)
    tool_time: dict[str, int] = field(default_factory=dict)  # ns per tool key


def chart_data(db_path: str, run_ids: list[str], pricing: Pricing) -> ChartData:
    """Everything the charts draw, computed off the UI thread on its own connection."""
    with Store(db_path) as store:
        summaries = summarize_many(store, pricing, run_ids, GROUPS)
        tool_time = {row.key: row.ns for row in summaries["tool"].rows}
        cumulative: list[tuple[float, float]] = []
        spans: list[tuple[float, float]] = []
        waste: list[tuple[str, float, float]] = []
        if len(run_ids) == 1:  # read as pairs of integers: no step objects for a big run
            run = store.find_run(run_ids[0])
            origin = run.start_ns or 0  # the run's first step's start (see runs._total)
            cumulative = [((t - origin) / 1e9, float(c)) for t, c in store.cumulative_cost(run.id)]
            incidents = store.incidents(run.id)
            ends = {i.first_step for i in incidents} | {i.last_step for i in incidents}
            times = store.step_times(run.id, [s for s in ends if s])
            for number, incident in enumerate(incidents, 1):
                label = f"{number}. {incident.kind.replace('_', ' ')}"
                waste.append((label, float(incident.wasted_cost), incident.wasted_ns / 1e9))
                first = times.get(incident.first_step or "", (None, None))
                last = times.get(incident.last_step or "", (None, None))
                if first[0] is not None:
                    end = last[1] if last[1] is not None else last[0]
                    spans.append(((first[0] - origin) / 1e9, ((end or first[0]) - origin) / 1e9))
    return ChartData(summaries, cumulative, spans, waste, tool_time)


class UsdAxis(pg.AxisItem):
    """Ticks in plain dollars ("$0.013"), never "USD (x0.001)" with "13"."""

    def __init__(self, orientation: str):
        super().__init__(orientation)
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values, scale, spacing):
        # As many decimals as the spacing needs: $0.01, $0.02 … or $0.0005, $0.0010 …
        decimals = max(0, -math.floor(math.log10(spacing * scale))) if spacing > 0 else 2
        return [f"${v * scale:,.{decimals}f}" if v else "$0" for v in values]


TITLES = {"tool": "Cost by tool", "model": "Cost by model", "kind": "Cost by kind",
          "waste": "Wasted by incident", "cumulative": "Cumulative cost"}  # fmt: skip


class CostChartsView(QScrollArea):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        grid = QWidget()
        self.grid = QGridLayout(grid)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.plots: dict[str, pg.PlotWidget] = {}
        self.columns = 0
        self.data: ChartData | None = None
        self.text_color = self.palette().text().color()  # the window sets it on a change
        self.setWidget(grid)

    def ensure_plots(self) -> None:
        """Make the plots, when they are first to be seen: they took a third of the time
        a window takes to open, and its charts start behind the timeline."""
        if self.plots:
            return
        for name in TITLES:
            axis = "left" if name == "cumulative" else "bottom"
            plot = pg.PlotWidget(title=TITLES[name], axisItems={axis: UsdAxis(axis)})
            plot.getPlotItem().hideButtons()
            plot.setMouseEnabled(x=False, y=False)
            plot.setMinimumHeight(CHART_HEIGHT)
            self.plots[name] = plot
        self.plots["cumulative"].setMouseEnabled(x=True, y=False)
        self.plots["cumulative"].setLabel("bottom", "seconds since the run started")
        self._place(min(max(self.width() // CHART_WIDTH, 1), len(self.plots)))

    def _place(self, columns: int) -> None:
        """As many charts side by side as the width allows, so that each keeps a readable
        size whatever the dock's shape."""
        if columns == self.columns:
            return
        self.columns = columns
        plots = list(self.plots.values())
        for n, plot in enumerate(plots):
            # The last (the cumulative cost, a time series) takes what is left of its row.
            span = columns - n % columns if n == len(plots) - 1 else 1
            self.grid.addWidget(plot, n // columns, n % columns, 1, span)
        for column in range(5):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.plots:
            self._place(min(max(self.width() // CHART_WIDTH, 1), len(self.plots)))

    def show_data(self, data: ChartData | None) -> None:
        self.data = data  # drawn again in the new colours when the palette changes
        self.ensure_plots()
        for plot in self.plots.values():
            plot.clear()
            plot.getAxis("left").setTicks(None)  # no labels left over from the last data
            for side in ("left", "bottom"):
                plot.getPlotItem().showAxis(side)
        if data is None:
            return
        for name in GROUPS:
            self._bars(self.plots[name], data.summaries[name], name, data.tool_time)
        self._waste(self.plots["waste"], data.waste, bool(data.cumulative))
        plot = self.plots["cumulative"]
        for start, end in data.loop_spans:
            color = pg.mkColor(INCIDENT_COLOR)
            color.setAlpha(60)
            plot.addItem(
                pg.LinearRegionItem((start, max(end, start + 1e-3)), movable=False, brush=color)
            )
        if data.cumulative:
            xs = [0.0] + [x for x, _ in data.cumulative]
            ys = [0.0] + [y for _, y in data.cumulative]
            # A dot per step where they can be told apart: 50k dots took half a second.
            dots = {"symbol": "o", "symbolSize": 4} if len(xs) <= MAX_DOTS else {}
            plot.plot(xs, ys, stepMode=None, pen=pg.mkPen(BAR_COLOR, width=2), **dots)
        self._title(plot, "Cumulative cost" + ("" if data.cumulative else " (select one run)"))

    def _bars(self, plot: pg.PlotWidget, summary: CostSummary, name: str,
              tool_time: dict[str, int]) -> None:  # fmt: skip
        # Every tool is listed, free ones too: a tool called 40 times for $0 still matters.
        shown = [r for r in summary.rows
                 if r.cost > 0 or (name == "tool" and not r.key.startswith("("))]  # fmt: skip
        rows = shown[:MAX_BARS]
        title = f"{TITLES[name]} — total {format_usd(summary.total.cost)}"
        if len(shown) > len(rows):
            title += f" (top {len(rows)} of {len(shown)})"
        self._title(plot, title)
        labels = [shorten(r.label or r.key, 14 if name == "tool" else 22) for r in rows]
        if name == "tool":  # how often each was called, and for how long in all
            labels = [f"{label} ×{r.steps} · {format_duration(tool_time.get(r.key))}"
                      for label, r in zip(labels, rows, strict=True)]  # fmt: skip
        colors = [KIND_COLORS.get(r.key, BAR_COLOR) if name == "kind" else BAR_COLOR for r in rows]
        self._draw_bars(plot, labels, [float(r.cost) for r in rows], colors,
                        [format_usd(r.cost) for r in rows])  # fmt: skip

    def _waste(self, plot: pg.PlotWidget, waste: list[tuple[str, float, float]],
               one_run: bool) -> None:  # fmt: skip
        if not one_run:
            self._title(plot, "Wasted by incident (select one run)")
            self._draw_bars(plot, [], [], [], [])
            return
        total = sum(cost for _, cost, _ in waste)
        self._title(plot, f"Wasted by incident — {plural(len(waste), 'incident')},"
                      f" {format_usd(Decimal(repr(total)))}" if waste else "No incidents")  # fmt: skip
        self._draw_bars(plot, [label for label, _, _ in waste], [c for _, c, _ in waste],
                        [INCIDENT_COLOR] * len(waste),
                        [f"{format_usd(Decimal(repr(c)))} · {format_duration(round(t * 1e9))}"
                         for _, c, t in waste])  # fmt: skip

    def _title(self, plot: pg.PlotWidget, text: str) -> None:
        plot.setTitle(text, color=self.text_color)

    def _draw_bars(self, plot: pg.PlotWidget, labels: list[str], values: list[float],
                   colors: list[str], texts: list[str]) -> None:  # fmt: skip
        if not labels:  # the title says why: no axes around nothing
            for side in ("left", "bottom"):
                plot.getPlotItem().hideAxis(side)
            return
        plot.getAxis("left").setTicks([list(enumerate(labels))])
        ys = list(range(len(labels)))
        plot.addItem(pg.BarGraphItem(x0=[0] * len(labels), width=values, y=ys, height=0.6,
                                     brushes=colors))  # fmt: skip
        plot.getPlotItem().invertY(True)
        # Room on the right for the value written after the longest bar.
        plot.setXRange(0, (max(values) or 1e-6) * 1.5, padding=0)
        plot.setYRange(-0.6, len(labels) - 0.4, padding=0)
        for y, (value, text) in enumerate(zip(values, texts, strict=True)):
            label = pg.TextItem(text, anchor=(0, 0.5), color=self.text_color)
            label.setPos(value, y)
            plot.addItem(label)
