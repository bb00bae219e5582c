"""Views of the aggregated API docs (SPEC section 15): the merged OpenAPI document and a
Swagger UI page over it. Public read: the documents describe what clients may call anyway,
and nothing here names a target. The page uses only the gateway's own static files.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from registry.apidocs.documents import merged_document

__all__ = ["docs_page", "openapi_document"]

# Browsers may reuse the document briefly; the sweep changes it at most every few minutes.
DOCUMENT_MAX_AGE_SECONDS = 60


@require_safe
def openapi_document(request: HttpRequest) -> JsonResponse:
    """The merged OpenAPI document of every service, paths as clients call them here."""
    response = JsonResponse(merged_document(), json_dumps_params={"ensure_ascii": False})
    response["Cache-Control"] = f"public, max-age={DOCUMENT_MAX_AGE_SECONDS}"
    return response


@require_safe
def docs_page(request: HttpRequest) -> HttpResponse:
    """Swagger UI over the merged document, above which each service's document status."""
    services = merged_document()["x-gateway-services"]
    return render(request, "apidocs/index.html", {"services": services})
