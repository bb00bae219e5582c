"""`?name=value` list filters for every app's management API, also shown in the OpenAPI schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request

__all__ = ["QueryFilter", "QueryParamFilterBackend"]

_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """One `?name=value` list filter: an ORM lookup, a value type and the allowed values."""

    lookup: str
    boolean: bool = False
    choices: tuple[str, ...] = ()
    description: str = ""
    moment: bool = False  # an ISO 8601 date or date-time, e.g. `?since=2024-05-01T08:00:00Z`

    def parse(self, raw: str):
        if self.boolean:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError("Use true or false.")
        if self.moment:
            return _parse_moment(raw)
        if self.choices and raw not in self.choices:
            raise ValueError(f"Use one of: {', '.join(self.choices)}.")
        return raw

    def openapi_parameter(self, name: str) -> dict:
        schema = {"type": "boolean"} if self.boolean else {"type": "string"}
        if self.moment:
            schema["format"] = "date-time"
        if self.choices:
            schema["enum"] = list(self.choices)
        return {
            "name": name, "in": "query", "required": False, "schema": schema,
            "description": self.description or f"Only items whose {name} is this value.",
        }  # fmt: skip


SINCE = QueryFilter(
    "created_at__gte", moment=True, description="Only items created at or after this moment (ISO 8601)."
)


def _filters_of(view) -> dict[str, QueryFilter]:
    """The view's filters, plus `since` on every list of timestamped rows."""
    filters_ = dict(getattr(view, "query_filters", {}))
    model = getattr(getattr(view, "queryset", None), "model", None)
    if model is not None and any(field.name == "created_at" for field in model._meta.get_fields()):
        filters_.setdefault("since", SINCE)
    return filters_


def _parse_moment(raw: str) -> datetime:
    """A date-time (UTC when it names no offset) or a date (its UTC midnight)."""
    try:
        moment = parse_datetime(raw)
        if moment is None and (day := parse_date(raw)) is not None:
            moment = datetime(day.year, day.month, day.day)
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError("Use an ISO 8601 date or date-time, e.g. 2024-05-01T08:00:00Z.")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:  # in UTC: databases refuse some offsets Python accepts (PostgreSQL: -21:06)
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("That moment is out of range.") from None


class QueryParamFilterBackend(BaseFilterBackend):
    """Filters a list by the view's `query_filters`; a bad value is a 400 naming the parameter."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view) -> QuerySet:
        lookups = {}
        errors = {  # no database stores NUL in text (PostgreSQL refuses it: found as a 500)
            name: ["Must not contain a NUL character."]
            for name, value in request.query_params.items()
            if "\x00" in value
        }
        for name, spec in _filters_of(view).items():
            raw = request.query_params.get(name, "")
            if not raw:
                continue
            try:
                lookups[spec.lookup] = spec.parse(raw)
            except ValueError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise ValidationError(errors)
        return queryset.filter(**lookups)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [spec.openapi_parameter(name) for name, spec in _filters_of(view).items()]
