"""The file through the management API: export, diff, apply and the file's JSON Schema (staff only)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import renderers, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from declarative.constants import YAML_CONTENT_TYPE
from declarative.document import ConfigFileError, dump_json, dump_yaml, parse_document
from declarative.export import export_document
from declarative.schema import config_schema
from declarative.sync import apply_document

__all__ = ["ConfigApplyView", "ConfigDiffView", "ConfigExportView", "ConfigSchemaView"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FILE_BODY = {YAML_CONTENT_TYPE: OpenApiTypes.STR, "application/json": OpenApiTypes.OBJECT}
_CHANGES = inline_serializer(
    "ConfigChanges",
    {
        action: serializers.ListField(child=serializers.CharField())
        for action in ("created", "updated", "deleted")
    },
)
_FLAGS = [
    OpenApiParameter("prune", OpenApiTypes.BOOL, description="Delete what the file no longer has."),
    OpenApiParameter("prune_tenants", OpenApiTypes.BOOL, description="Also delete tenants and their data."),
]


class YamlRenderer(renderers.BaseRenderer):
    """The file as it is committed: sorted YAML."""

    media_type = YAML_CONTENT_TYPE
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return dump_yaml(data).encode(self.charset)


class SortedJSONRenderer(renderers.JSONRenderer):
    """The file as JSON, byte for byte what `gateway_config export -o FILE.json` writes."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return dump_json(data).encode(self.charset or "utf-8")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in _TRUE


class ConfigExportView(APIView):
    """The registry as a configuration file: YAML, or JSON with `Accept: application/json`."""

    renderer_classes = [YamlRenderer, SortedJSONRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("include_key_hashes", OpenApiTypes.BOOL, description="Add API-key hashes.")
        ],
        responses={
            (200, YAML_CONTENT_TYPE): OpenApiTypes.OBJECT,  # the file: a YAML mapping
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
    )
    def get(self, request: Request) -> Response:
        return Response(export_document(include_key_hashes=_flag(request, "include_key_hashes")))


class ConfigSchemaView(APIView):
    """The JSON Schema every file is checked against before the model validators run."""

    renderer_classes = [renderers.JSONRenderer]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(config_schema())


class _FileChangeView(APIView):
    """Read the body as a file and run it through apply (rolled back for a diff or a dry run).

    A bad value is the 400 VALIDATION_ERROR problem whose `errors` are keyed by the value's path
    in the file (`services[2].targets[0].url`), as the command reports it.
    """

    renderer_classes = [renderers.JSONRenderer]
    dry_run = False

    def post(self, request: Request) -> Response:
        try:
            report = apply_document(
                parse_document(request.body),
                prune=_flag(request, "prune"),
                prune_tenants=_flag(request, "prune_tenants"),
                dry_run=self.dry_run or _flag(request, "dry_run"),
                request=request,
            )
        except ConfigFileError as exc:
            raise ValidationError(exc.as_errors()) from exc
        return Response(report.as_dict())


@extend_schema(
    request=_FILE_BODY,
    parameters=_FLAGS,
    responses={200: _CHANGES},
)
class ConfigDiffView(_FileChangeView):
    """What applying the file would change; nothing is changed."""

    dry_run = True


@extend_schema(
    request=_FILE_BODY,
    parameters=[
        *_FLAGS,
        OpenApiParameter("dry_run", OpenApiTypes.BOOL, description="Report, then roll back."),
    ],
    responses={200: _CHANGES},
)
class ConfigApplyView(_FileChangeView):
    """Make the registry what the file says, in one transaction, or change nothing."""
