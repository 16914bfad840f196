from django.urls import path

from analytics import views

app_name = "analytics"

urlpatterns = [
    path("", views.dataset, name="dataset"),
    path("model/", views.model_report, name="model-report"),
    path("monitoring/", views.monitoring, name="monitoring"),
    path("figures/<path:name>", views.figure, name="figure"),
]
