"""URL wiring for everything Django serves: admin, management API, auth, health, metrics, docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gateway_project.web import problems
from tenancy.mfa.admin_site import install_otp_admin_site
from tenancy.views import jwks_view

handler400 = problems.handler400
handler403 = problems.handler403
handler404 = problems.handler404
handler500 = problems.handler500

urlpatterns = [
    path("admin/", install_otp_admin_site().urls),
    path("account/mfa/", include("tenancy.mfa.urls")),
    path("api/manage/", include("gateway_project.manage_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include("tenancy.urls")),
    path("api/v1/", include("alerts.urls")),
    path("", include("gateway_project.ops.urls")),
    path("dashboard/", include("gateway_project.ops.dashboard_urls")),
    path("portal/", include("portal.urls")),
    path("api/v1/", include("gateway_project.ops.geocode_urls")),
    path("api/v1/", include("registry.apidocs.urls")),
    path(".well-known/jwks.json", jwks_view, name="jwks"),
    path("problems/", problems.problem_index, name="problem-index"),
    path("problems/<slug:slug>", problems.problem_page, name="problem-page"),
]
