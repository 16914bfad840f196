from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from diagnosis.health import healthz, livez

admin.site.site_header = "BrainScan administration"
admin.site.site_title = "BrainScan admin"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("admin/", admin.site.urls),
    path("api/", include("diagnosis.api.urls")),
    path("analytics/", include("analytics.urls")),
    path("", include("diagnosis.urls")),
]

handler404 = "diagnosis.errors.not_found"
handler403 = "diagnosis.errors.forbidden"
handler500 = "diagnosis.errors.server_error"
