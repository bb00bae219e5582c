"""Routes of the plugins management API under /api/manage/."""

from rest_framework.routers import SimpleRouter

from plugins.api import views

app_name = "plugins-api"

router = SimpleRouter()
router.register("plugins", views.PluginConfigViewSet, basename="plugin")

urlpatterns = router.urls
