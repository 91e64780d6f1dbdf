"""tracedesk: a desktop tool for looking at what LLM agents actually did."""

__version__ = "0.1.0"
