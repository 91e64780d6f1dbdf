"""Prices: USD per 1M tokens per model (by usage type, tier and date), USD per call per tool.

Model prices come from the ``genai-prices`` catalogue (Pydantic's; its data ships inside
the package, so pricing never needs the network): the price in force at a step's start,
the tier a call's input size falls in, cache reads, cache writes (5-minute and 1-hour),
reasoning and per-request fees where the catalogue has them. The catalogue is imported on
the first model price asked for (it takes about 0.2 s), not when the app starts.

The shipped resources/pricing.json holds per-call tool prices (the catalogue has none). A
``pricing.json`` of the same shape in the user's config directory overrides or adds models
and tools; a user's model price wins over the catalogue's. Model names resolve with their
provider: ``openai/gpt-4o``, ``azure/gpt-4o``, Bedrock ids (``us.anthropic.claude-…``),
Vertex resource paths (``projects/…/models/gemini-2.5-flash``) and the step's provider
name; an unknown name has no price (never a price of zero).
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import platformdirs
from mypy_extensions import mypyc_attr

from tracedesk.resources import resource

MILLION = Decimal(1_000_000)
CATALOGUE = "genai-prices"
# Bedrock model ids: "anthropic.claude-…-v2:0", optionally behind a region ("us.", "eu.").
_BEDROCK = re.compile(
    r"^(?:(?:us|eu|apac|ap|jp|au|ca|us-gov|global)\.)?"
    r"(?:anthropic|meta|mistral|amazon|cohere|deepseek|ai21|writer|qwen|openai)\.(.+)$"
)
_VENDOR_PREFIX = re.compile(
    r"^(?:[a-z]{2,6}\.)?(?:anthropic|meta|mistral|amazon|cohere|deepseek)\."
)
# Vertex AI resource paths: "projects/p/locations/l/publishers/google/models/gemini-2.5-flash".
_VERTEX = re.compile(r"(?:^|/)publishers/([^/]+)/models/([^/]+)$|^projects/.+/models/([^/]+)$")
_BOUNDARY = ("-", ":", "@", "_")
# Provider names as traces spell them, where the catalogue's own matching would miss them.
_PROVIDER_ALIASES = {
    "bedrock": "aws", "aws.bedrock": "aws", "amazon_bedrock": "aws", "vertex_ai": "google",
    "gcp.vertex_ai": "google", "gcp.vertex.agent": "google", "gcp.gemini": "google",
    "azure.ai.openai": "azure", "azure_openai": "azure", "az.ai.openai": "azure",
    "azure.ai.inference": "azure", "xai": "x-ai", "together_ai": "together",
}  # fmt: skip
# Catalogue price keys and the ModelPrice fields they fill (USD per 1M tokens, or per
# 1,000 requests for requests_kcount).
_PRICE_KEYS = {
    "input_mtok": "input", "output_mtok": "output", "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write", "cache_write_1h_mtok": "cache_write_1h",
    "output_reasoning_mtok": "reasoning", "requests_kcount": "per_request",
}  # fmt: skip
_USER_KEYS = ("cached_input", "cache_write", "cache_write_1h", "reasoning", "per_request")
_TIER_KEYS = ("input", "output", *_USER_KEYS)


class PricingError(Exception):
    """A pricing file that cannot be used; names the file and the entry."""


@mypyc_attr(native_class=False)  # sent to worker processes: pickled
@dataclass(frozen=True, slots=True)
class Tier:
    """Prices for calls whose input (cache included) is above ``above`` tokens."""

    above: int
    prices: tuple[tuple[str, Decimal], ...]  # (ModelPrice field, price)


@mypyc_attr(native_class=False)  # sent to worker processes: pickled
@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1M tokens (per_request: USD per call), with where it came from."""

    name: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # cache read
    cache_write: Decimal | None = None  # cache creation (5-minute where the two differ)
    cache_write_1h: Decimal | None = None
    reasoning: Decimal | None = None
    per_request: Decimal | None = None
    tiers: tuple[Tier, ...] = ()  # ascending thresholds
    provider: str | None = None
    as_of: str | None = None  # the date this price took effect, where known
    source: str | None = None  # the catalogue and its version, or the user's file

    @property
    def label(self) -> str:
        """The name with its provider: ``anthropic/claude-sonnet-4-5``."""
        return f"{self.provider}/{self.name}" if self.provider else self.name

    def for_input(self, input_tokens: int) -> ModelPrice:
        """The prices of a call with this many input tokens: past a tier's threshold the
        tier's prices apply to all its tokens (as the providers bill it)."""
        for tier in reversed(self.tiers):
            if input_tokens > tier.above:
                changes: dict[str, Any] = dict(tier.prices)
                return replace(self, tiers=(), **changes)
        return self


@mypyc_attr(native_class=False)  # sent to worker processes: pickled
@dataclass(frozen=True, slots=True)
class ToolPrice:
    name: str
    per_call: Decimal
    source: str | None = None


def user_pricing_path() -> Path:
    return Path(platformdirs.user_config_dir("tracedesk", appauthor=False)) / "pricing.json"


@cache  # metadata lookups scan sys.path and leave reference cycles: once a process
def catalogue_version() -> str | None:
    """The installed genai-prices version (read from its metadata, without importing it)."""
    from importlib import metadata  # here: 17 ms to import, in every worker process else

    try:
        return metadata.version(CATALOGUE)
    except metadata.PackageNotFoundError:
        return None


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


NS_PER_DAY = 86_400 * 10**9
MAX_BY_DAY = 4096  # prices remembered by model, provider and day


def moment_of(start_ns: int | None) -> datetime.datetime:
    """A step's start as a UTC datetime; now when it has none."""
    if start_ns is None:
        return datetime.datetime.now(datetime.UTC)
    try:
        return datetime.datetime.fromtimestamp(start_ns / 1e9, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.datetime.now(datetime.UTC)


@mypyc_attr(native_class=False)  # sent to worker processes: pickled
class Pricing:
    """Model and tool prices: the user's file over the catalogue and the shipped tools."""

    def __init__(
        self,
        models: dict[str, ModelPrice],
        tools: dict[str, ToolPrice],
        fingerprint: str,
        catalogue: bool = True,
    ):
        self.models = models  # the user's model prices, by normalized name
        self.tools = tools
        self.fingerprint = fingerprint  # changes whenever any price does
        self.catalogue = catalogue and catalogue_version() is not None
        self._by_length = sorted(models, key=len, reverse=True)
        self._user_cache: dict[str, ModelPrice | None] = {}
        self._found: dict[tuple[str, str | None], Any] = {}  # (provider, model info) | None
        self._prices: dict[tuple, ModelPrice | None] = {}
        # What ``resolve`` gave, by model, provider and UTC day, for prices that do not
        # change by the time of day (most): one lookup for every call on one day.
        self._by_day: dict[tuple[str, str | None, int], ModelPrice | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Sent to a reader process without what it looked up (catalogue objects)."""
        state = self.__dict__.copy()
        state.update(_user_cache={}, _found={}, _prices={}, _by_day={})
        return state

    @classmethod
    def load(
        cls, user_file: Path | None = None, use_user_file: bool = True, catalogue: bool = True
    ) -> Pricing:
        documents = [("pricing.json (shipped)", resource("pricing.json").read_bytes())]
        path = user_file or user_pricing_path()
        if use_user_file and path.exists():
            try:
                documents.append((str(path), path.read_bytes()))
            except OSError as exc:
                raise PricingError(f"{path}: cannot read: {exc.strerror or exc}") from None
        models: dict[str, ModelPrice] = {}
        tools: dict[str, ToolPrice] = {}
        digest = hashlib.sha256(f"{CATALOGUE} {catalogue and catalogue_version()}".encode())
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
            source = "user pricing.json" if label == str(path) else None
            for name, entry in (data.get("models") or {}).items():
                where = f"{label}: models.{name}"
                models[normalize_model(name)] = _model_price(name, entry, where, source)
            for name, entry in (data.get("tools") or {}).items():
                where = f"{label}: tools.{name}"
                if not isinstance(entry, dict):
                    raise PricingError(f"{where}: expected an object")
                per_call = _money(entry.get("per_call"), where + ".per_call")
                tools[name.lower()] = ToolPrice(name, per_call, entry.get("source"))
        return cls(models, tools, digest.hexdigest()[:16], catalogue)

    def resolve(
        self, model: str | None, provider: str | None = None, start_ns: int | None = None
    ) -> ModelPrice | None:
        """The price of a model (for the step's provider and start time), if any: the
        user's longest matching name, else the catalogue's."""
        if not model:
            return None
        day = None if start_ns is None else (model, provider, start_ns // NS_PER_DAY)
        if day is not None and day in self._by_day:
            return self._by_day[day]
        found = self.user_price(model)
        if found is None and self.catalogue:
            found = self._catalogue_price(model, provider, start_ns)
        looked_up = self._found.get((model, provider))  # (…, by time of day) if found there
        if day is not None and not (looked_up and looked_up[2]):
            if len(self._by_day) >= MAX_BY_DAY:
                self._by_day.clear()
            self._by_day[day] = found
        return found

    def warm(self) -> None:
        """Load the catalogue now rather than when a step is first priced (its imports
        take 0.2 s and more)."""
        if self.catalogue:
            _find_in_catalogue("gpt-4o", None)

    def user_price(self, model: str) -> ModelPrice | None:
        """The user's price of the longest name this model starts with, if any."""
        if model in self._user_cache:
            return self._user_cache[model]
        name = normalize_model(model)
        found = self.models.get(name)
        if found is None:
            for known in self._by_length:
                if name.startswith(known) and name[len(known)] in _BOUNDARY:
                    found = self.models[known]
                    break
        self._user_cache[model] = found
        return found

    def tool(self, name: str | None) -> ToolPrice | None:
        return self.tools.get(name.lower()) if name else None

    # -- the catalogue ---------------------------------------------------------------

    def _catalogue_price(
        self, model: str, provider: str | None, start_ns: int | None
    ) -> ModelPrice | None:
        key = (model, provider)
        if key not in self._found:
            found = _find_in_catalogue(model, provider)
            self._found[key] = found and (*found, _has_time_of_day(found[1]))
        found = self._found[key]
        if found is None:
            return None
        catalogue_provider, info, by_time_of_day = found
        # Prices change by date (a step's UTC day number is its key: no datetime per step);
        # DeepSeek's off-peak prices also by time of day.
        if by_time_of_day or start_ns is None:
            moment = moment_of(start_ns)
            when: tuple = (moment.date(), moment.hour, moment.minute)
        else:
            when = (start_ns // NS_PER_DAY,)
        price_key = (catalogue_provider.id, info.id, *when)
        if price_key not in self._prices:
            self._prices[price_key] = _from_catalogue(catalogue_provider, info, moment_of(start_ns))
        return self._prices[price_key]


def _find_in_catalogue(model: str, provider: str | None) -> Any:
    """(catalogue provider, model info) for a model name as a trace spells it, or None."""
    from genai_prices import data_snapshot  # 0.2 s: only when a price is first needed

    snapshot = data_snapshot.get_snapshot()
    for provider_id, ref in _candidates(model, provider):
        try:
            return snapshot.find_provider_model(ref, None, provider_id, None)
        except LookupError:
            continue
    return None


def _provider_id(name: str | None) -> str | None:
    """A trace's provider name as a catalogue provider id, if the catalogue knows it."""
    if not name:
        return None
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    text = name.strip().lower()
    if text in _PROVIDER_ALIASES:
        return _PROVIDER_ALIASES[text]
    if "azure" in text:
        return "azure"
    found = find_provider_by_id(get_snapshot().providers, text)
    return found.id if found is not None else None


def _candidates(model: str, provider: str | None) -> list[tuple[str | None, str]]:
    """(catalogue provider id or None, model ref) to try in turn, the most specific first."""
    name = model.strip().lower()
    hinted = _provider_id(provider)
    # The trace's provider first: an aggregator's names ("anthropic/claude-…" on
    # OpenRouter) are its own models, at its own prices.
    tries: list[tuple[str | None, str]] = [(hinted, name)] if hinted is not None else []
    vertex = _VERTEX.search(name)
    if vertex:  # Vertex sells Google's models and others' (Anthropic's via fallback)
        tries.append(("google", (vertex.group(2) or vertex.group(3)).split("@")[0]))
    bedrock = _BEDROCK.match(name)
    if bedrock:
        tries += [("aws", name), ("aws", name.split(".", 1)[1]), (None, bedrock.group(1))]
    prefix, slash, rest = name.partition("/")
    if slash and (prefixed := _provider_id(prefix)) is not None:
        tries += [(prefixed, rest), (prefixed, name)]
        if prefixed == "aws" and (bedrock := _BEDROCK.match(rest)):
            tries += [("aws", rest), (None, bedrock.group(1))]
    tries.append((None, name))
    if slash:
        tries.append((None, name.rsplit("/", 1)[1]))
    return list(dict.fromkeys(tries))


def _has_time_of_day(info: Any) -> bool:
    from genai_prices.types import TimeOfDateConstraint

    return isinstance(info.prices, list) and any(
        isinstance(p.constraint, TimeOfDateConstraint) for p in info.prices
    )


def _from_catalogue(provider: Any, info: Any, moment: datetime.datetime) -> ModelPrice | None:
    """The catalogue's price of a model in force at a moment, as a ModelPrice; None when it
    has no token prices then (an OCR or audio model, say): no price, never $0."""
    from genai_prices.types import ModelPrice as CatalogueModelPrice
    from genai_prices.types import StartDateConstraint, TieredPrices

    as_of = None
    if isinstance(info.prices, CatalogueModelPrice):
        prices = info.prices
    else:  # the last period in force wins; before the first, the first applies
        prices = info.prices[0].prices
        period = info.prices[0]
        for conditional in reversed(info.prices):
            if conditional.constraint is None or conditional.constraint.active(moment):
                prices, period = conditional.prices, conditional
                break
        if isinstance(period.constraint, StartDateConstraint):
            as_of = period.constraint.start_date.isoformat()
    base: dict[str, Decimal] = {}
    tiered: dict[str, Any] = {}
    for key, field in _PRICE_KEYS.items():
        value = getattr(prices, key, None)
        if isinstance(value, TieredPrices):
            base[field] = value.base
            tiered[field] = value
        elif value is not None:
            base[field] = value
    if "input" not in base and "output" not in base:
        return None
    if "per_request" in base:  # the catalogue prices requests per thousand
        base["per_request"] /= 1000
    thresholds = sorted({t.start for value in tiered.values() for t in value.tiers})
    tiers = tuple(
        Tier(above, tuple((field, _tier_price(value, above)) for field, value in tiered.items()))
        for above in thresholds
    )
    return ModelPrice(
        name=info.id,
        input=base.get("input", Decimal(0)),
        output=base.get("output", Decimal(0)),
        cached_input=base.get("cached_input"),
        cache_write=base.get("cache_write"),
        cache_write_1h=base.get("cache_write_1h"),
        reasoning=base.get("reasoning"),
        per_request=base.get("per_request"),
        tiers=tiers,
        provider=provider.id,
        as_of=as_of,
        source=f"{CATALOGUE} {catalogue_version()}",
    )


def _tier_price(value: Any, above: int) -> Decimal:
    """A tiered catalogue price for calls just past ``above`` input tokens."""
    price = value.base
    for tier in value.tiers:
        if tier.start <= above:
            price = tier.price
    return price


def _model_price(name: str, entry: Any, where: str, source: str | None) -> ModelPrice:
    if not isinstance(entry, dict):
        raise PricingError(f"{where}: expected an object")
    optional = {
        key: _money(entry[key], f"{where}.{key}")
        for key in _USER_KEYS
        if entry.get(key) is not None
    }
    tiers = []
    for n, tier in enumerate(entry.get("tiers") or []):
        here = f"{where}.tiers[{n}]"
        if not isinstance(tier, dict) or not isinstance(tier.get("above"), int):
            raise PricingError(f"{here}: expected an object with 'above' (input tokens)")
        prices = tuple((key, _money(value, f"{here}.{key}")) for key, value in tier.items()
                       if key in _TIER_KEYS)  # fmt: skip
        tiers.append(Tier(tier["above"], prices))
    return ModelPrice(
        name=name,
        input=_money(entry.get("input"), f"{where}.input"),
        output=_money(entry.get("output"), f"{where}.output"),
        tiers=tuple(sorted(tiers, key=lambda t: t.above)),
        provider=entry.get("provider"),
        as_of=entry.get("as_of"),
        source=entry.get("source") or source,
        **optional,
    )
