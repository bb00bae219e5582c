"""What Django serves on a data plane (GATEWAY_ROLE=data_plane): health, metrics, problem pages.

No admin, management API, logins, alerts or dashboard: they need the registry's database,
which a data plane does not have; they run on the control plane (SPEC section 18). Any
other path is a 404 problem, like an unknown path on any gateway.
"""

from django.urls import include, path

from gateway_project.web import problems

handler400 = problems.handler400
handler403 = problems.handler403
handler404 = problems.handler404
handler500 = problems.handler500

urlpatterns = [
    path("", include("gateway_project.ops.urls")),
    path("problems/", problems.problem_index, name="problem-index"),
    path("problems/<slug:slug>", problems.problem_page, name="problem-page"),
]
