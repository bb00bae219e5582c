"""The usage API's query parameters and rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rest_framework import serializers

from gateway_project.web.filters import QueryFilter
from usage.choices import Granularity
from usage.constants import MAX_HOURLY_REPORT_DAYS, MAX_REPORT_DAYS, REPORT_DEFAULT_DAYS

__all__ = ["UsageQuerySerializer", "UsageRowSerializer"]

_MOMENT = QueryFilter("", moment=True)


class MomentField(serializers.CharField):
    """An ISO 8601 date or date-time (UTC unless it names an offset), like the list filters."""

    def to_internal_value(self, data) -> datetime:
        try:
            return _MOMENT.parse(super().to_internal_value(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class UsageQuerySerializer(serializers.Serializer):
    """`?tenant=&service=&from=&to=&granularity=`: [from, to) in whole hours, the last week by default."""

    tenant = serializers.SlugField(
        required=False, allow_blank=True, help_text="Tenant slug; empty: every tenant."
    )
    service = serializers.SlugField(
        required=False, allow_blank=True, help_text="Service slug; empty: every service."
    )
    granularity = serializers.ChoiceField(choices=Granularity.choices, default=Granularity.HOUR)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # `from` is a Python keyword: declared here so the parameter keeps its name.
        self.fields["from"] = MomentField(required=False, help_text="Start (ISO 8601), inclusive.")
        self.fields["to"] = MomentField(required=False, help_text="End (ISO 8601), exclusive.")

    def validate(self, attrs: dict) -> dict:
        end = attrs.get("to") or _next_hour(datetime.now(UTC))
        start = attrs.get("from") or end - timedelta(days=REPORT_DEFAULT_DAYS)
        if start >= end:
            raise serializers.ValidationError({"from": "Must be before `to`."})
        longest = MAX_HOURLY_REPORT_DAYS if attrs["granularity"] == Granularity.HOUR else MAX_REPORT_DAYS
        if end - start > timedelta(days=longest):
            raise serializers.ValidationError(
                {"to": f"At most {longest} days per request at {attrs['granularity']} granularity."}
            )
        attrs["from"], attrs["to"] = start, end
        return attrs


def _next_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


class UsageRowSerializer(serializers.Serializer):
    tenant = serializers.CharField(help_text="Tenant slug; empty for anonymous requests.")
    service = serializers.CharField()
    period_start = serializers.DateTimeField()
    requests = serializers.IntegerField()
    status_4xx = serializers.IntegerField()
    status_5xx = serializers.IntegerField()
    bytes_in = serializers.IntegerField()
    bytes_out = serializers.IntegerField()
    latency_p50_ms = serializers.FloatField(allow_null=True)
    latency_p95_ms = serializers.FloatField(allow_null=True)
