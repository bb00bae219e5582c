"""Bodies of the public alerts endpoints (the management API has its own in alerts/api/)."""

from rest_framework import serializers

from alerts.choices import Severity
from alerts.models import MAX_MESSAGE_LENGTH, Alert

__all__ = ["AlertSerializer", "PublishAlertSerializer"]


class PublishAlertSerializer(serializers.Serializer):
    severity = serializers.ChoiceField(choices=Severity.choices)
    message = serializers.CharField(max_length=MAX_MESSAGE_LENGTH, trim_whitespace=True)
    service = serializers.SlugField(max_length=50, required=False, allow_blank=True, default="")
    tenant = serializers.SlugField(max_length=50, required=False, help_text="Staff only: the target tenant.")


class AlertSerializer(serializers.ModelSerializer):
    alert_id = serializers.IntegerField(source="pk", read_only=True)
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    timestamp = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Alert
        fields = ["alert_id", "event_id", "tenant", "severity", "message", "service", "timestamp"]
