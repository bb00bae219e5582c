"""Bases of every app's management API: CRUD for staff with each change recorded in Django's
LogEntry like the admin does (so API changes show in a tenant's history too), and missing
objects answered as the NOT_FOUND problem.
"""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import transaction
from django.db.models import ProtectedError
from django.http import Http404
from rest_framework import filters, serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.request import Request

from gateway_project.web.filters import QueryFilter, QueryParamFilterBackend
from gateway_project.web.problems import problem_response

__all__ = ["ManagementViewSet", "NoBody", "NotFoundProblemMixin", "record_change"]


def record_change(request: Request, obj, flag: int, message: str) -> None:
    """Write the admin's LogEntry for a change made through the API (tenant history, audit)."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=[obj], action_flag=flag,
        change_message=message, single_object=True,
    )  # fmt: skip


class NotFoundProblemMixin:
    """A missing object is DRF's NotFound, so the problem body says NOT_FOUND.

    (get_object() raises Django's Http404, which the problem handler does not map yet.)
    """

    def get_object(self):
        try:
            return super().get_object()
        except Http404 as exc:
            raise NotFound() from exc


class ManagementViewSet(NotFoundProblemMixin, viewsets.ModelViewSet):
    """CRUD for staff: filtered, searchable, ordered, paginated, every change logged."""

    filter_backends = (QueryParamFilterBackend, filters.SearchFilter, filters.OrderingFilter)
    query_filters: dict[str, QueryFilter] = {}

    def perform_create(self, serializer) -> None:
        with transaction.atomic():
            serializer.save()
            record_change(self.request, serializer.instance, ADDITION, "Added through the API.")

    def perform_update(self, serializer) -> None:
        changed = ", ".join(sorted(serializer.validated_data)) or "nothing"
        with transaction.atomic():
            serializer.save()
            record_change(self.request, serializer.instance, CHANGE, f"Changed {changed} through the API.")

    def perform_destroy(self, instance) -> None:
        with transaction.atomic():
            record_change(self.request, instance, DELETION, "Deleted through the API.")
            instance.delete()

    def destroy(self, request: Request, *args, **kwargs):
        try:
            return super().destroy(request, *args, **kwargs)
        except ProtectedError as exc:
            blockers = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
            return problem_response(
                request,
                "CONFLICT",
                f"Still referenced by {', '.join(blockers)}: remove those first.",
            )


class NoBody(serializers.Serializer):
    """Actions that take no request body (the browsable API shows no form for them)."""
