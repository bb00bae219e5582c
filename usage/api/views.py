"""GET /api/manage/usage/: usage per tenant, service and hour or day, as JSON or CSV."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.core.problems import PROBLEM_CONTENT_TYPE
from gateway_project.web.problems import ProblemSerializer
from usage.api.renderers import FormatParameterNegotiation, UsageCSVRenderer
from usage.api.serializers import UsageQuerySerializer, UsageRowSerializer
from usage.report import usage_rows

__all__ = ["UsageView"]

_PARAMETERS = [
    OpenApiParameter("tenant", OpenApiTypes.STR, description="Only this tenant (slug)."),
    OpenApiParameter("service", OpenApiTypes.STR, description="Only this service (slug)."),
    OpenApiParameter("from", OpenApiTypes.DATETIME, description="Start, inclusive (default: a week ago)."),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="End, exclusive (default: the next hour)."),
    OpenApiParameter("granularity", OpenApiTypes.STR, enum=["hour", "day"], description="Default hour."),
]


@extend_schema(tags=["usage"])
class UsageView(APIView):
    """Requests, 4xx, 5xx, bytes and latency percentiles per tenant, service and period."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, UsageCSVRenderer]
    content_negotiation_class = FormatParameterNegotiation

    @extend_schema(
        parameters=_PARAMETERS,
        responses={200: UsageRowSerializer(many=True), (400, PROBLEM_CONTENT_TYPE): ProblemSerializer},
    )
    def get(self, request: Request) -> Response:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        tenant, service = params.get("tenant") or None, params.get("service") or None  # "": every one
        rows = usage_rows(params["from"], params["to"], params["granularity"], tenant, service)
        data = UsageRowSerializer([row.as_dict() for row in rows], many=True).data
        response = Response(data)
        if getattr(request.accepted_renderer, "format", "") == "csv":
            response["Content-Disposition"] = 'attachment; filename="usage.csv"'
        return response
