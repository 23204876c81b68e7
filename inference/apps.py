from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"

    def ready(self) -> None:
        from inference import readcache  # noqa: F401  (its receivers: a market or model saved in any process)
