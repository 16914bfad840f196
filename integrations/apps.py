from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Hospital integration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from diagnosis.events import study_finished
        from integrations import services

        # Inside the transaction that finishes the study: the outbox rows commit or roll back with it.
        study_finished.connect(services.queue_deliveries, dispatch_uid="integrations.webhook-outbox")
