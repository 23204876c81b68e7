from django.apps import AppConfig


class FeaturesConfig(AppConfig):
    name = "features"

    def ready(self) -> None:
        from features import receivers  # noqa: F401  (connects the signal receivers)
