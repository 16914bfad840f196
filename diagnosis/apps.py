from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from diagnosis import signals  # noqa: F401  (audit of logins)
        from diagnosis import worker  # noqa: F401  (model loading and heartbeat in inference workers)
