"""/api/v1/... endpoints, the OpenAPI schema at /api/schema/ and its interactive docs at /api/docs/."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from diagnosis.api import views
from diagnosis.api.schema import ApiDocsView

app_name = "api"

router = DefaultRouter()
router.register("studies", views.StudyViewSet, basename="study")
router.register("patients", views.PatientViewSet, basename="patient")
router.register("models", views.ModelVersionViewSet, basename="model")

urlpatterns = [
    path("v1/auth/token/", views.TokenView.as_view(), name="token"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", ApiDocsView.as_view(url_name="api:schema"), name="docs"),
]
