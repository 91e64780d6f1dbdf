"""Pure-Python core of tracedesk: model, importers, store, analysis. Never imports Qt."""
