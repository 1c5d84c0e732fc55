"""Message templates: the shipped defaults and tenant overrides, rendered in a Jinja2 sandbox.

Tenants write their own templates, so a template is untrusted code. It runs in
Jinja2's (immutable) sandbox with no globals, a short list of filters, no
method calls, no includes, and bounded output; data must be plain JSON-like
values so a template can reach nothing but the data. Only the HTML part of an
e-mail is autoescaped: SMS and WhatsApp text goes out as written.

Formatting: money is integer cents (`{{ amount_cents|money }}`: "R$ 1.234,56" in
pt-BR, "R$1,234.56" in English, CLDR's patterns for BRL; `money('USD')` for other
currencies); times are shown in the tenant's time zone (`|datetime`, `|date`,
`|time`), "25/03/2025 14:30" in pt-BR and "Mar 25, 2025, 2:30 PM" in English.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any, Final, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2.exceptions
from jinja2 import Environment, StrictUndefined, Template, Undefined, meta, nodes, pass_eval_context
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from connectors.smtp.headers import header_text_problem
from hub.messaging.addresses import CHANNELS, Channel
from hub.messaging.segments import SegmentCount, count_segments

DEFAULT_LOCALE: Final = "pt-BR"
DEFAULT_TIMEZONE: Final = "America/Sao_Paulo"
DEFAULT_TEMPLATE_NAMES: Final[tuple[str, ...]] = (
    "order-created",
    "order-completed",
    "order-status-changed",
    "technician-assigned",
    "payment-received",
    "payment-overdue",
    "appointment-reminder",
    "welcome",
)

# Bounds on what one tenant's template can cost a shared worker.
MAX_TEMPLATE_CHARS: Final = 65_536
MAX_RENDERED_CHARS: Final = 262_144
_MAX_DATA_DEPTH: Final = 10

FormatLanguage = Literal["pt-BR", "en"]
Part = Literal["body", "subject", "html"]


# --- errors -------------------------------------------------------------------------


class TemplateError(ValueError):
    """A template that cannot be saved or rendered, or data it cannot be rendered with."""


class MissingVariable(TemplateError):
    """The data lacks a variable the template needs."""

    def __init__(self, variables: Collection[str], *, template: str) -> None:
        self.variables = tuple(variables)
        self.variable = self.variables[0]
        names = ", ".join(repr(name) for name in self.variables)
        super().__init__(f"template {template!r} needs variable {names}, missing from the data")


class UndeclaredVariable(TemplateError):
    """The template reads a variable that is neither required nor known to be supplied (often a typo)."""

    def __init__(self, variables: Collection[str], *, template: str) -> None:
        self.variables = tuple(variables)
        names = ", ".join(repr(name) for name in self.variables)
        super().__init__(f"template {template!r} uses undeclared variable {names}")


class UnsafeTemplate(TemplateError):
    """The template tries something the sandbox forbids."""


class TemplateSyntax(TemplateError):
    """The template does not parse; `part` and `line` say where."""

    def __init__(self, message: str, *, template: str, part: str, line: int | None) -> None:
        self.part = part
        self.line = line
        where = f"{part}, line {line}" if line is not None else part
        super().__init__(f"template {template!r} ({where}): {message}")


class InvalidValue(TemplateError):
    """A value in the data is of the wrong kind for how the template uses it."""


class UnsafeHeader(TemplateError):
    """A rendered header (the e-mail subject) would not stay one header line."""

    def __init__(self, message: str, *, part: str) -> None:
        self.part = part
        super().__init__(message)


class TemplateNotFound(TemplateError, LookupError):
    """No default template has that name."""


# --- what callers pass and get back ---------------------------------------------------


@dataclass(frozen=True)
class TemplateSource:
    """One template for one channel and locale, from the shipped defaults or a tenant's override.

    For e-mail, `body` is the plain-text part and `subject` and `html` are required;
    SMS and WhatsApp use `body` only.
    """

    name: str
    locale: str
    channel: Channel
    body: str
    subject: str | None = None
    html: str | None = None
    required: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RenderedMessage:
    """A message ready to send; `segments` is set for SMS."""

    channel: Channel
    body: str
    subject: str | None = None
    html: str | None = None
    segments: SegmentCount | None = None
    # the locale the text was taken from, and (WhatsApp) the approved provider template it maps to
    locale: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_parameters: tuple[str, ...] = ()


# --- the sandbox -----------------------------------------------------------------------
#
# Jinja's sandbox keeps a template away from Python's internals, but not from exhausting a
# shared worker's memory or CPU (its docs say as much). So, on top of it: every text a
# template builds (`*`, `+`, `~`, filters, output) is size-checked before it is allocated,
# and constructs that buffer output or multiply work (set and filter blocks, macros,
# nested loops) are refused when the template is compiled.


def _printed_size(value: Any, limit: int = MAX_RENDERED_CHARS) -> int:
    """Roughly len(str(value)), counted only until it passes `limit`, without building the text.

    Containers are walked, so a list holding one big string a thousand times costs
    `limit` steps, not its printed size.
    """
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Undefined):
            continue  # `|default` receives these; printing one raises on its own
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2  # decimal digits, over-estimated
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            if total <= limit:
                pending.extend(item.keys())
                pending.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            if total <= limit:
                pending.extend(item)
        else:
            total += len(str(item))
    return total


def _refuse_if_larger(size: int, what: str) -> None:
    if size > MAX_RENDERED_CHARS:
        raise jinja2.exceptions.SecurityError(f"{what} would be longer than {MAX_RENDERED_CHARS} characters")


class _MessageEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, bounded and limited to the data's keys."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > _MAX_INT_BITS:
                raise jinja2.exceptions.SecurityError(f"the power would exceed {_MAX_INT_BITS} bits")
        elif operator == "+":
            _refuse_if_larger(_printed_size(left) + _printed_size(right), "the sum")
        elif operator == "%" and isinstance(left, str):
            # printf-style widths ("%999999999s") allocate without bound; use filters instead.
            raise jinja2.exceptions.SecurityError("%-formatting of strings is not allowed")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Data answers with its keys and items only, never its methods (`order.items`,
        # `name.upper`); other objects (loop, dates) get the sandbox's own checks.
        if isinstance(obj, Mapping | str | list | tuple):
            return self._item(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping | str | list | tuple):
            return self._item(obj, argument)
        return super().getitem(obj, argument)

    def _item(self, container: Any, key: Any) -> Any:
        if isinstance(container, Mapping) or not isinstance(key, str):
            try:
                return container[key]
            except (LookupError, TypeError):
                pass
        return self.undefined(obj=container, name=key)


_MAX_INT_BITS: Final = 4096


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
            raise jinja2.exceptions.SecurityError(f"the product would exceed {_MAX_INT_BITS} bits")
        return
    sequence, times = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(times, int) and isinstance(sequence, str | list | tuple):
        _refuse_if_larger(_printed_size(sequence) * max(times, 0), "the repetition")


def _finalize(value: Any) -> Any:
    """Applied to every `{{ … }}` before it is turned into text."""
    _refuse_if_larger(_printed_size(value), "the output")
    return value


@pass_eval_context
def _concat(eval_ctx: EvalContext, parts: list[Any]) -> str:
    """Jinja's `~`, with a size check first (templates' `~` nodes are rewritten to call this)."""
    _refuse_if_larger(sum(_printed_size(part) for part in parts), "the concatenation")
    return markup_join(parts) if eval_ctx.autoescape else str_join(parts)


class _BoundedConcat(NodeTransformer):
    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, "_concat", [], [], None, None, lineno=node.lineno)


def _bounded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so neither its input nor its result can outgrow the output limit."""

    @functools.wraps(function)  # keeps Jinja's pass_* marker
    def bounded(*args: Any, **kwargs: Any) -> Any:
        values = [arg for arg in (*args, *kwargs.values()) if not isinstance(arg, EvalContext | Environment)]
        _refuse_if_larger(sum(_printed_size(value) for value in values), f"the input of |{name}")
        if name in _AMPLIFYING_FILTERS:
            _refuse_if_larger(_AMPLIFYING_FILTERS[name](*values), f"the result of |{name}")
        result = function(*args, **kwargs)
        _refuse_if_larger(_printed_size(result), f"the result of |{name}")
        return result

    return bounded


def _replaced_size(text: Any, old: Any = "", new: Any = "", count: Any = None) -> int:
    text, old, new = str(text), str(old), str(new)
    occurrences = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * max(len(new) - len(old), 0)


def _joined_size(items: Any, separator: Any = "", attribute: Any = None) -> int:
    count = len(items) if isinstance(items, str | list | tuple | Mapping) else 0
    return _printed_size(items) + len(str(separator)) * max(count - 1, 0)


# Filters whose output can be far larger than their input: checked before they run.
_AMPLIFYING_FILTERS: Final[dict[str, Callable[..., int]]] = {"replace": _replaced_size, "join": _joined_size}
_ALLOWED_JINJA_FILTERS: Final = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "int", "join", "last",
        "length", "lower", "replace", "round", "string", "striptags", "title", "trim", "truncate",
        "upper", "urlencode", "wordcount",
    }
)  # fmt: skip
_OWN_FILTERS: Final = frozenset({"money", "datetime", "date", "time"})
# What a template may name; `_concat` is ours, reached only through `~`.
TEMPLATE_FILTERS: Final = _ALLOWED_JINJA_FILTERS | _OWN_FILTERS


def _environment(*, autoescape: bool) -> _MessageEnvironment:
    env = _MessageEnvironment(
        autoescape=autoescape,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    # No globals: `range`, `cycler`, `namespace`... are ways out of the data, not needs of a message.
    env.globals.clear()
    filters = {name: env.filters[name] for name in _ALLOWED_JINJA_FILTERS}
    filters.update(money=_money, datetime=_datetime, date=_date, time=_time)
    env.filters = {name: _bounded(name, function) for name, function in filters.items()}
    env.filters["_concat"] = _concat
    return env


# --- formatting filters ----------------------------------------------------------------


class _Formatting(NamedTuple):
    language: FormatLanguage
    zone: ZoneInfo


# Set per render call, so compiled templates can be shared by every tenant and locale.
_formatting: ContextVar[_Formatting] = ContextVar("message_formatting")

_SYMBOLS: Final[dict[FormatLanguage, dict[str, str]]] = {
    "pt-BR": {"BRL": "R$", "USD": "US$", "EUR": "€"},
    "en": {"BRL": "R$", "USD": "$", "EUR": "€"},
}
_MONTHS_EN: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CURRENCY_CODE: Final = re.compile(r"[A-Z]{3}")


def _money(cents: Any, currency: str = "BRL") -> str:
    """Integer cents as money in the render's language; two decimals for every currency."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise InvalidValue(f"money expects integer cents, got {type(cents).__name__} {cents!r}")
    if not isinstance(currency, str) or not _CURRENCY_CODE.fullmatch(currency):
        raise InvalidValue(f"money expects an ISO 4217 currency code such as 'BRL', got {currency!r}")
    language = _formatting.get().language
    units, hundredths = divmod(abs(cents), 100)
    grouped = f"{units:,}"
    sign = "-" if cents < 0 else ""
    symbol = _SYMBOLS[language].get(currency, currency)
    if language == "pt-BR":
        return f"{sign}{symbol} {grouped.replace(',', '.')},{hundredths:02d}"
    separator = " " if symbol == currency else ""  # "R$1,234.56" but "ARS 1,234.56"
    return f"{sign}{symbol}{separator}{grouped}.{hundredths:02d}"


def _when(value: Any) -> datetime | date:
    """A datetime or date from the data; ISO-8601 text is parsed (date-only text stays a date)."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise InvalidValue(f"expected an ISO-8601 date or datetime, got {value!r}") from None
    if isinstance(value, date):
        return value
    raise InvalidValue(f"expected a date or datetime, got {type(value).__name__} {value!r}")


def _local_datetime(value: Any) -> datetime:
    """`value` in the render's time zone; a naive datetime is taken as UTC (the hub stores UTC)."""
    when = _when(value)
    if not isinstance(when, datetime):
        raise InvalidValue(f"{when.isoformat()} is a date without a time of day")
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(_formatting.get().zone)


def _local_date(value: Any) -> date:
    """The calendar day of `value` where the recipient is; a plain date is already that."""
    when = _when(value)
    return _local_datetime(when).date() if isinstance(when, datetime) else when


def _format_date(day: date, language: FormatLanguage) -> str:
    if language == "pt-BR":
        return f"{day.day:02d}/{day.month:02d}/{day.year}"
    return f"{_MONTHS_EN[day.month - 1]} {day.day}, {day.year}"


def _format_time(moment: datetime, language: FormatLanguage) -> str:
    if language == "pt-BR":
        return f"{moment.hour:02d}:{moment.minute:02d}"
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def _date(value: Any) -> str:
    return _format_date(_local_date(value), _formatting.get().language)


def _time(value: Any) -> str:
    return _format_time(_local_datetime(value), _formatting.get().language)


def _datetime(value: Any) -> str:
    moment = _local_datetime(value)
    language = _formatting.get().language
    joiner = " " if language == "pt-BR" else ", "
    return f"{_format_date(moment, language)}{joiner}{_format_time(moment, language)}"


# --- compiling and checking ----------------------------------------------------------------


class _Compiled(NamedTuple):
    template: Template
    variables: frozenset[str]


_TEXT_ENV: Final = _environment(autoescape=False)
_HTML_ENV: Final = _environment(autoescape=True)
# Nodes that would load other templates: there is no loader, and a tenant may not read ours.
_LOADING_NODES: Final = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
# Nodes that buffer output past the output limit, multiply work, or switch escaping off.
_REFUSED_BLOCKS: Final[dict[type[nodes.Node], str]] = {
    nodes.Macro: "macros are not allowed",
    nodes.CallBlock: "call blocks are not allowed",
    nodes.FilterBlock: "filter blocks are not allowed; apply the filter to the value",
    nodes.AssignBlock: "block assignments are not allowed; use {% set name = value %}",
    nodes.ScopedEvalContextModifier: "autoescape blocks are not allowed: escaping is fixed per part",
    nodes.EvalContextModifier: "autoescape blocks are not allowed: escaping is fixed per part",
}


@lru_cache(maxsize=2048)
def _compile(text: str, autoescape: bool, name: str, part: str) -> _Compiled:
    """Parse, check and compile one part; cached because a broadcast renders the same text thousands of times."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise UnsafeTemplate(f"template {name!r} ({part}) is longer than {MAX_TEMPLATE_CHARS} characters")
    env = _HTML_ENV if autoescape else _TEXT_ENV
    try:
        tree = env.parse(text)
        _refuse_unsafe_constructs(tree, name=name, part=part)
        variables = frozenset(meta.find_undeclared_variables(tree))
        tree = _BoundedConcat().visit(tree)
        tree.set_environment(env)
        template = env.from_string(tree)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise TemplateSyntax(exc.message or str(exc), template=name, part=part, line=exc.lineno) from None
    return _Compiled(template, variables)


def _refuse_unsafe_constructs(tree: nodes.Template, *, name: str, part: str) -> None:
    """Refuse, before anything runs, what the sandbox would only catch (or not) at render time."""

    def refuse(node: nodes.Node, why: str) -> UnsafeTemplate:
        return UnsafeTemplate(f"template {name!r} ({part}, line {node.lineno}): {why}")

    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise refuse(node, f"private attribute {node.attr!r}")
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            raise refuse(node, f"private attribute {node.arg.value!r}")
        if isinstance(node, nodes.Call) and not isinstance(node.node, nodes.Name):
            # Public methods such as str.ljust or str.format can still allocate without bound.
            raise refuse(node, "method calls are not allowed; use filters")
        if isinstance(node, nodes.Filter) and node.name not in TEMPLATE_FILTERS:
            if node.name in JINJA_FILTERS:
                raise refuse(node, f"filter {node.name!r} is not allowed")
            raise jinja2.exceptions.TemplateSyntaxError(f"no filter named {node.name!r}", node.lineno)
        if isinstance(node, _LOADING_NODES):
            raise refuse(node, "templates cannot extend, include or import other templates")
        if type(node) in _REFUSED_BLOCKS:
            raise refuse(node, _REFUSED_BLOCKS[type(node)])
        if isinstance(node, nodes.For) and (node.recursive or next(node.find_all(nodes.For), None)):
            raise refuse(node, "nested or recursive loops are not allowed")


def _parts(source: TemplateSource) -> list[tuple[Part, str, bool]]:
    """(part, text, autoescape) for each part the channel sends."""
    if source.channel not in CHANNELS:
        raise TemplateError(f"template {source.name!r}: unknown channel {source.channel!r}")
    if not source.body:
        raise TemplateError(f"template {source.name!r} ({source.channel}): body is empty")
    if source.channel != "email":
        return [("body", source.body, False)]
    if not source.subject or not source.html:
        raise TemplateError(f"template {source.name!r} (email): subject and html are required")
    return [("subject", source.subject, False), ("body", source.body, False), ("html", source.html, True)]


def validate_template(source: TemplateSource, *, optional: Collection[str] = ()) -> None:
    """Check a template before it is saved: parts present, syntax, sandbox rules, and variables.

    Every variable the template reads must be in `source.required` or in `optional`
    (variables the event may supply), so a typo is caught now rather than at send time.
    """
    for variable in source.required:
        if not variable.isidentifier() or variable.startswith("_"):
            raise TemplateError(f"template {source.name!r}: {variable!r} is not a valid variable name")
    if source.channel != "email" and (source.subject is not None or source.html is not None):
        raise TemplateError(f"template {source.name!r} ({source.channel}): only e-mail has a subject and html")
    used: set[str] = set()
    for part, text, autoescape in _parts(source):
        used |= _compile(text, autoescape, source.name, part).variables
    undeclared = used - set(source.required) - set(optional)
    if undeclared:
        raise UndeclaredVariable(sorted(undeclared), template=source.name)


# --- rendering -------------------------------------------------------------------------


def render(
    template: TemplateSource,
    data: Mapping[str, Any],
    *,
    channel: Channel,
    locale: str | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> RenderedMessage:
    """Render `template` with `data` for `channel`.

    `locale` picks money and date formats (default: the template's own locale, so
    text and numbers agree); `timezone` is where times are shown. Raises a
    TemplateError subclass naming the problem; `channel` must be the template's.
    """
    if channel != template.channel:
        raise ValueError(f"template {template.name!r} is for {template.channel}, not {channel}")
    context = _checked_data(data)
    # None counts as missing: "Olá, None!" is worse than not sending.
    missing = [name for name in template.required if context.get(name) is None]
    if missing:
        raise MissingVariable(missing, template=template.name)
    formatting = _Formatting(_format_language(locale or template.locale), _zone(timezone))

    token = _formatting.set(formatting)
    try:
        rendered = {
            part: _render_part(_compile(text, autoescape, template.name, part), context, template.name)
            for part, text, autoescape in _parts(template)
        }
    finally:
        _formatting.reset(token)

    body = rendered["body"].strip()
    if not body:
        raise TemplateError(f"template {template.name!r} rendered an empty body")
    if channel != "email":
        segments = count_segments(body) if channel == "sms" else None
        return RenderedMessage(channel=channel, body=body, segments=segments)
    # A subject is one header line; a newline from the data must not start another header.
    subject = " ".join(rendered["subject"].split())
    # ...nor one spelled as an RFC 2047 encoded-word, which the mail library would decode
    problem = header_text_problem(subject)
    if problem is not None:
        raise UnsafeHeader(f"subject: template {template.name!r} renders a subject that {problem}", part="subject")
    return RenderedMessage(channel=channel, body=body, subject=subject, html=rendered["html"])


def _render_part(compiled: _Compiled, context: dict[str, Any], name: str) -> str:
    chunks: list[str] = []
    size = 0
    try:
        for chunk in compiled.template.generate(context):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise UnsafeTemplate(f"template {name!r} renders more than {MAX_RENDERED_CHARS} characters")
            chunks.append(chunk)
    except TemplateError:
        raise
    except jinja2.exceptions.SecurityError as exc:
        raise UnsafeTemplate(f"template {name!r}: {exc}") from None
    except jinja2.exceptions.UndefinedError as exc:
        raise MissingVariable([_undefined_name(exc)], template=name) from None
    except RecursionError:
        raise UnsafeTemplate(f"template {name!r} recurses too deeply") from None
    except (jinja2.exceptions.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidValue(f"template {name!r}: {exc}") from None
    return "".join(chunks)


_UNDEFINED_NAME: Final = re.compile(r"'([^']*)' is undefined|has no attribute '([^']*)'|has no element (.+)$")


def _undefined_name(exc: jinja2.exceptions.UndefinedError) -> str:
    match = _UNDEFINED_NAME.search(exc.message or "")
    if match is None:
        return exc.message or "unknown"
    return next(group for group in match.groups() if group is not None)


_DATA_SCALARS: Final = (str, int, float, Decimal, bool, date, type(None))


def _checked_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of `data`, refused unless it is plain JSON-like values (plus dates and Decimals).

    Objects (ORM rows, settings) would let a template walk their public attributes.
    """
    if not isinstance(data, Mapping):
        raise InvalidValue(f"template data must be a mapping, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or key.startswith("_"):
            raise InvalidValue(f"template data key {key!r} must be a string not starting with '_'")
    _check_value(data, path="data", depth=0)
    return dict(data)


def _check_value(value: Any, *, path: str, depth: int) -> None:
    if isinstance(value, _DATA_SCALARS):
        return
    if depth >= _MAX_DATA_DEPTH:
        raise InvalidValue(f"{path} is nested deeper than {_MAX_DATA_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValue(f"{path} has a non-string key {key!r}")
            _check_value(item, path=f"{path}.{key}", depth=depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, path=f"{path}[{index}]", depth=depth + 1)
    else:
        raise InvalidValue(f"{path} is a {type(value).__name__}; template data must be plain values")


def _format_language(locale: str) -> FormatLanguage:
    return "en" if locale.lower().startswith("en") else "pt-BR"


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


# --- the shipped defaults ------------------------------------------------------------------


class _Catalog(NamedTuple):
    required: tuple[str, ...]
    sample: Mapping[str, Any]
    # locale -> channel -> part -> text
    locales: Mapping[str, Mapping[str, Mapping[str, str]]]


def default_template(name: str, locale: str, channel: Channel) -> TemplateSource:
    """The shipped template `name` for `channel`, in `locale` or the nearest one we have.

    Fallback: exact locale, then the same language ("en-US" → "en", "pt-PT" → "pt-BR"),
    then pt-BR. The returned source's `locale` says which one was used.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    entry = _entry(name)
    chosen = _nearest_locale(locale, entry.locales.keys())
    parts = entry.locales[chosen][channel]
    return TemplateSource(
        name=name,
        locale=chosen,
        channel=channel,
        body=parts["body"],
        subject=parts.get("subject"),
        html=parts.get("html"),
        required=list(entry.required),
    )


def sample_data(name: str) -> dict[str, Any]:
    """Example data for the default template `name` (previews, tests); times as ISO-8601 text."""
    return copy.deepcopy(dict(_entry(name).sample))


def _entry(name: str) -> _Catalog:
    try:
        return _catalog()[name]
    except KeyError:
        raise TemplateNotFound(f"no default template {name!r}; known: {', '.join(DEFAULT_TEMPLATE_NAMES)}") from None


def _nearest_locale(requested: str, available: Collection[str]) -> str:
    wanted = requested.replace("_", "-").lower()
    by_lower = {locale.lower(): locale for locale in available}
    if wanted in by_lower:
        return by_lower[wanted]
    language = wanted.split("-")[0]
    for locale in sorted(available, key=lambda candidate: candidate != DEFAULT_LOCALE):
        if locale.lower().split("-")[0] == language:
            return locale
    return DEFAULT_LOCALE


@lru_cache(maxsize=1)
def _catalog() -> dict[str, _Catalog]:
    """Load default_templates/*.json once, on first use (nothing is read at import)."""
    folder = resources.files("hub.messaging.default_templates")
    catalog: dict[str, _Catalog] = {}
    for name in DEFAULT_TEMPLATE_NAMES:
        document = json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
        if document.get("name") != name:
            raise ValueError(f"default template file {name}.json names itself {document.get('name')!r}")
        locales = {
            locale: {
                channel: {part: _joined(text) for part, text in parts.items()} for channel, parts in channels.items()
            }
            for locale, channels in document["locales"].items()
        }
        if DEFAULT_LOCALE not in locales:
            raise ValueError(f"default template {name!r} has no {DEFAULT_LOCALE} version")
        for locale, channels in locales.items():
            if set(channels) != set(CHANNELS):
                raise ValueError(f"default template {name!r} ({locale}) must cover {', '.join(CHANNELS)}")
        catalog[name] = _Catalog(tuple(document["required"]), document["sample"], locales)
    return catalog


def _joined(text: str | list[str]) -> str:
    # Long parts are stored as a list of lines so the JSON stays readable and diffs stay small.
    return "\n".join(text) if isinstance(text, list) else text


def default_variants(name: str) -> tuple[tuple[str, ...], dict[str, dict[str, dict[str, str]]]]:
    """``(required, {locale: {channel: {part: text}}})`` of the default template `name`."""
    entry = _entry(name)
    return entry.required, copy.deepcopy({locale: {channel: dict(parts) for channel, parts in channels.items()}
                                           for locale, channels in entry.locales.items()})
