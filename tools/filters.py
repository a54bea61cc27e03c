"""The filter that TextMagic's sessions API lacks: by time, text, source and destination, read in the user's zone.

A date means that whole day in ``timezone`` (``until`` included); a date-time without an offset is read in
``timezone`` too. The filter's fields are declared once, on ``SessionQuery`` (types, descriptions, validation);
every form of it derives from there: the tools' parameters (``with_filter``), the query of a resource link
(``uri_query``, ``from_uri``), and the command line's options (``server.wiring.cli``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.shared.uri_template import UriTemplate
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from server.state.settings import known_timezone
from server.textmagic.models import MessageSession, parse_time


def _moment(text: str) -> str:
    parse_moment(text)
    return text


def _zone(name: str) -> str:
    if not known_timezone(name):
        raise ValueError(
            "not a known IANA time zone; use a name such as Europe/Berlin, America/New_York or UTC"
        )
    return name


Since = Annotated[
    str | None,
    Field(description="ISO 8601 date (from its start) or date-time"),
    AfterValidator(lambda v: v if v is None else _moment(v)),
]
Until = Annotated[
    str | None,
    Field(description="ISO 8601 date (included) or date-time"),
    AfterValidator(lambda v: v if v is None else _moment(v)),
]
TimeZone = Annotated[
    str | None,
    Field(description="IANA zone (default: the server's)"),
    AfterValidator(lambda v: v if v is None else _zone(v)),
]
TextFilter = Annotated[
    str | None,
    Field(min_length=1, max_length=200, description="In the title, text or referenceId, any case"),
]
Sources = Annotated[
    list[Literal["O", "A", "M", "E", "X"]] | None,
    Field(min_length=1, max_length=5, description="O web app, A API, M messenger, E email, X list"),
]
Destinations = Annotated[
    list[Literal["t", "s", "v"]] | None,
    Field(min_length=1, max_length=3, description="t text, s speech, v voice"),
]


class SessionQuery(BaseModel):
    """The filter arguments as a tool received them (and as a resource link carries them)."""

    since: Since = None
    until: Until = None
    timezone: TimeZone = None
    text: TextFilter = None
    source: Sources = None
    destination: Destinations = None

    @property
    def narrows(self) -> bool:
        """Whether anything but the time zone is given: a filter that leaves some sessions out."""
        return any(value is not None for name, value in self if name in NARROWING)


# The fields that leave sessions out (the time zone only says how dates read), as messages name them.
NARROWING = tuple(name for name in SessionQuery.model_fields if name != "timezone")
NARROWING_NAMES = ", ".join(NARROWING[:-1]) + f" or {NARROWING[-1]}"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
M = TypeVar("M", bound=BaseModel)


def with_filter(fn: F) -> F:
    """``fn``, which takes the filter as one ``query: SessionQuery`` parameter, as a tool or resolver that takes
    the filter's fields by name in its place: the parameter group declared once, on ``SessionQuery``, and
    taken the same way by every tool that filters. The SDK derives each tool's schema from the signature
    given here."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields = typing.get_type_hints(SessionQuery, include_extras=True)
    parameters: list[inspect.Parameter] = []
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.name == "query":
            parameters += [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=fields[name])
                for name in SessionQuery.model_fields
            ]
        else:
            parameters.append(
                parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[parameter.name])
            )

    @functools.wraps(fn)
    async def expanded(**arguments: Any) -> Any:
        query = SessionQuery.model_validate(
            {name: arguments.pop(name, None) for name in SessionQuery.model_fields}
        )
        return await fn(query=query, **arguments)

    expanded.__signature__ = inspect.Signature(parameters, return_annotation=hints.get("return"))  # type: ignore[attr-defined]
    expanded.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": hints.get("return")}
    return typing.cast(F, expanded)


def listed(field: FieldInfo) -> bool:
    """Whether the field holds a list (written comma-separated in a URI or on the command line)."""
    options = typing.get_args(field.annotation) or (field.annotation,)
    return any(typing.get_origin(option) is list for option in options)


def uri_template(base: str, model: type[BaseModel]) -> str:
    """``base`` with every field of ``model`` as an RFC 6570 query parameter."""
    return f"{base}{{?{','.join(model.model_fields)}}}"


def uri_query(template: str, query: BaseModel) -> str:
    """The link for ``query``: the values given (not the defaults), lists comma-separated, booleans in lower case."""
    values: dict[str, str] = {}
    for name, value in query.model_dump(exclude_none=True, exclude_defaults=True).items():
        values[name] = (
            ",".join(value)
            if isinstance(value, list)
            else str(value).lower()
            if value is True
            else str(value)
        )
    return UriTemplate.parse(template).expand(values)


def from_uri(
    model: type[M], again: str
) -> Callable[[Callable[[Any, M], Awaitable[str]]], Callable[..., Awaitable[str]]]:
    """A resource function taking each field of ``model`` as text from its URI's query, handed on as one
    ``model``; a ResourceNotFoundError naming the fields, and the tool to call ``again``, when they are not valid."""

    def decorate(fn: Callable[[Any, M], Awaitable[str]]) -> Callable[..., Awaitable[str]]:
        hints = typing.get_type_hints(fn, include_extras=True)
        context = next(iter(inspect.signature(fn).parameters.values()))

        @functools.wraps(fn)
        async def parsed(**arguments: Any) -> str:
            ctx = arguments.pop(context.name)
            raw = {
                name: text.split(",") if text and listed(model.model_fields[name]) else text
                for name, text in arguments.items()
                if text is not None
            }
            try:
                query = model.model_validate(raw)
            except ValidationError as exc:
                where = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors()}))
                # No resource answers to this link: the protocol's "invalid params" (-32602).
                raise ResourceNotFoundError(
                    f"This link's query is invalid ({where}); call {again} again."
                ) from None
            return await fn(ctx, query)

        parameters = [
            context.replace(annotation=hints[context.name]),
            *(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)
                for name in model.model_fields
            ),
        ]
        parsed.__signature__ = inspect.Signature(parameters, return_annotation=str)  # type: ignore[attr-defined]
        parsed.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": str}
        return parsed

    return decorate


# Dates a filter can name: far enough either way for any send-out, near enough that a day more or a zone's
# offset never leaves what a datetime can hold.
EARLIEST, LATEST = date(1970, 1, 1), date(9000, 12, 31)


def parse_moment(text: str) -> date | datetime:
    """An ISO 8601 date or date-time; ValueError with what was expected otherwise."""
    try:
        if "T" in text or " " in text.strip():
            moment: date | datetime = datetime.fromisoformat(text.strip())
        else:
            moment = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            "not an ISO 8601 date or date-time; give 2026-11-30 (a whole day) or 2026-11-30T09:00 "
            "(in timezone, or with an offset such as +01:00)"
        ) from None
    day = moment.date() if isinstance(moment, datetime) else moment
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"outside {EARLIEST} to {LATEST}; give a date of the send-outs to look at")
    return moment


@dataclass(frozen=True)
class SessionFilter:
    """A resolved filter: half-open time bounds (aware), lower-cased text, sets of codes."""

    zone: str
    start: datetime | None = None
    end: datetime | None = None
    text: str | None = None
    sources: frozenset[str] | None = None
    destinations: frozenset[str] | None = None

    @classmethod
    def everything_in(cls, zone: str) -> SessionFilter:
        return cls(zone=zone)

    @property
    def everything(self) -> bool:
        narrowed = (self.start, self.end, self.text, self.sources, self.destinations)
        return all(part is None for part in narrowed)

    @classmethod
    def of(cls, query: SessionQuery, default_zone: str) -> SessionFilter:
        """Raises ToolError, naming the arguments, when ``until`` lies before ``since``."""
        zone = query.timezone or default_zone
        start = _bound(query.since, zone, end=False)
        end = _bound(query.until, zone, end=True)
        if start is not None and end is not None and end <= start:
            raise ToolError(
                f"Invalid arguments: until ({query.until}) is before since ({query.since}). Swap them, or give "
                "the same date to both for one whole day."
            )
        return cls(
            zone=zone,
            start=start,
            end=end,
            text=query.text.casefold() if query.text else None,
            sources=frozenset(query.source) if query.source else None,
            destinations=frozenset(query.destination) if query.destination else None,
        )

    def matches(self, session: MessageSession) -> bool:
        if self.start is not None or self.end is not None:
            started = parse_time(session.start_time)
            if started is None:
                return False
            if (self.start is not None and started < self.start) or (
                self.end is not None and started >= self.end
            ):
                return False
        if self.sources is not None and session.source not in self.sources:
            return False
        if self.destinations is not None and session.destination not in self.destinations:
            return False
        if self.text is not None:
            fields = (session.title, session.text, session.reference_id)
            return any(self.text in value.casefold() for value in fields if value)
        return True

    def before_start(self, session: MessageSession) -> bool:
        """Whether ``session`` started before ``since``: sessions listed after it are older still."""
        started = parse_time(session.start_time)
        return self.start is not None and started is not None and started < self.start

    def local(self, moment: datetime) -> datetime | None:
        """``moment`` in the filter's zone; None for one no calendar of this server holds (an odd date from
        TextMagic, say 9999-12-31T23:59 seen from east of UTC)."""
        try:
            return moment.astimezone(ZoneInfo(self.zone))
        except (OverflowError, ValueError):
            return None

    def describe(self) -> str:
        parts = []
        if self.start is not None:
            parts.append(f"since {self.start.isoformat()}")
        if self.end is not None:
            parts.append(f"before {self.end.isoformat()}")
        if self.text is not None:
            parts.append(f"text {self.text!r}")
        if self.sources is not None:
            parts.append(f"source {','.join(sorted(self.sources))}")
        if self.destinations is not None:
            parts.append(f"destination {','.join(sorted(self.destinations))}")
        return ", ".join(parts) or "every session"

    def digest(self) -> str:
        """What the filter selects, independent of how it was spelt: for binding a confirmation to it."""
        canonical = {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "text": self.text,
            "sources": sorted(self.sources) if self.sources else None,
            "destinations": sorted(self.destinations) if self.destinations else None,
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:24]


def _bound(text: str | None, zone: str, *, end: bool) -> datetime | None:
    if text is None:
        return None
    moment = parse_moment(text)
    tz = ZoneInfo(zone)
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
        # "Until 10:00" includes 10:00 itself.
        return aware + timedelta(microseconds=1) if end else aware
    day = moment + timedelta(days=1) if end else moment
    return datetime.combine(day, time(), tzinfo=tz)
