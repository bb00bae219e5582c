from rest_framework.routers import SimpleRouter

app_name = "alerts-api"

router = SimpleRouter()

urlpatterns = router.urls
