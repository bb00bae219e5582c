from rest_framework.routers import SimpleRouter

app_name = "tenancy-api"

router = SimpleRouter()

urlpatterns = router.urls
