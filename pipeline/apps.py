from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "pipeline"

    def ready(self) -> None:
        from pipeline import health  # noqa: F401  (registers the /healthz component)
