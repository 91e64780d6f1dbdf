"""The pricing table: USD per 1M tokens per model, USD per call per tool.

The shipped table (resources/pricing.json) can be overridden or extended by a
``pricing.json`` of the same shape in the user's config directory. Model names from
traces (``openai/gpt-4o-2024-08-06``, ``us.anthropic.claude-3-5-sonnet-20241022-v2:0``)
resolve to the longest known name they start with. Never needs the network.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import platformdirs

from tracedesk.resources import resource

MILLION = Decimal(1_000_000)
# Bedrock-style vendor prefixes, optionally behind a region: "us.anthropic.claude-…".
_VENDOR_PREFIX = re.compile(
    r"^(?:[a-z]{2,6}\.)?(?:anthropic|meta|mistral|amazon|cohere|deepseek)\."
)
_BOUNDARY = ("-", ":", "@", "_")


class PricingError(Exception):
    """A pricing file that cannot be used; names the file and the entry."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1M tokens."""

    name: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # cache read
    cache_write: Decimal | None = None  # cache creation (Anthropic: 1.25 x input)
    reasoning: Decimal | None = None
    provider: str | None = None
    as_of: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class ToolPrice:
    name: str
    per_call: Decimal
    source: str | None = None


def user_pricing_path() -> Path:
    return Path(platformdirs.user_config_dir("tracedesk", appauthor=False)) / "pricing.json"


def normalize_model(name: str) -> str:
    """Lower case, without provider prefixes (``openai/``, ``models/``, ``us.anthropic.``)."""
    text = name.strip().lower().rsplit("/", 1)[-1]
    return _VENDOR_PREFIX.sub("", text)


def _money(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PricingError(f"{where}: expected a number, not {value!r}")
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise PricingError(f"{where}: {value!r} is not a number") from None
    if not amount.is_finite() or not 0 <= amount <= MAX_PRICE:
        raise PricingError(f"{where}: {value!r} is not a price (0 to {MAX_PRICE:,} USD)")
    return amount


MAX_PRICE = 100_000  # USD per 1M tokens or per call: far above any real price


class Pricing:
    """Model and tool prices, the shipped table overlaid with the user's."""

    def __init__(
        self, models: dict[str, ModelPrice], tools: dict[str, ToolPrice], fingerprint: str
    ):
        self.models = models
        self.tools = tools
        self.fingerprint = fingerprint  # changes whenever any price does
        self._by_length = sorted(models, key=len, reverse=True)
        self._cache: dict[str, ModelPrice | None] = {}

    @classmethod
    def load(cls, user_file: Path | None = None, use_user_file: bool = True) -> Pricing:
        documents = [("pricing.json (shipped)", resource("pricing.json").read_bytes())]
        path = user_file or user_pricing_path()
        if use_user_file and path.exists():
            try:
                documents.append((str(path), path.read_bytes()))
            except OSError as exc:
                raise PricingError(f"{path}: cannot read: {exc.strerror or exc}") from None
        models: dict[str, ModelPrice] = {}
        tools: dict[str, ToolPrice] = {}
        digest = hashlib.sha256()
        for label, raw in documents:
            digest.update(raw)
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise PricingError(f"{label}: malformed JSON ({exc})") from None
            if not isinstance(data, dict):
                raise PricingError(f"{label}: expected an object with 'models' and 'tools'")
            unknown = [k for k in data if k not in ("_doc", "models", "tools")]
            if unknown:
                raise PricingError(f"{label}: unknown key {', '.join(map(repr, unknown))}"
                                   " (expected 'models' and 'tools')")  # fmt: skip
            for key in ("models", "tools"):
                if data.get(key) is not None and not isinstance(data[key], dict):
                    raise PricingError(f"{label}: {key} must be an object of name: price")
            for name, entry in (data.get("models") or {}).items():
                models[normalize_model(name)] = _model_price(name, entry, f"{label}: models.{name}")
            for name, entry in (data.get("tools") or {}).items():
                where = f"{label}: tools.{name}"
                if not isinstance(entry, dict):
                    raise PricingError(f"{where}: expected an object")
                per_call = _money(entry.get("per_call"), where + ".per_call")
                tools[name.lower()] = ToolPrice(name, per_call, entry.get("source"))
        return cls(models, tools, digest.hexdigest()[:16])

    def resolve(self, model: str | None) -> ModelPrice | None:
        """The price of the longest known model name this one starts with, if any."""
        if not model:
            return None
        if model in self._cache:
            return self._cache[model]
        name = normalize_model(model)
        found = self.models.get(name)
        if found is None:
            for known in self._by_length:
                if name.startswith(known) and name[len(known)] in _BOUNDARY:
                    found = self.models[known]
                    break
        self._cache[model] = found
        return found

    def tool(self, name: str | None) -> ToolPrice | None:
        return self.tools.get(name.lower()) if name else None


def _model_price(name: str, entry: Any, where: str) -> ModelPrice:
    if not isinstance(entry, dict):
        raise PricingError(f"{where}: expected an object")
    optional = {
        key: _money(entry[key], f"{where}.{key}")
        for key in ("cached_input", "cache_write", "reasoning")
        if entry.get(key) is not None
    }
    return ModelPrice(
        name=name,
        input=_money(entry.get("input"), f"{where}.input"),
        output=_money(entry.get("output"), f"{where}.output"),
        provider=entry.get("provider"),
        as_of=entry.get("as_of"),
        source=entry.get("source"),
        **optional,
    )
