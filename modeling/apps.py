from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "modeling"

    def ready(self) -> None:
        from modeling import schedule  # noqa: F401  (connects the Market post_save receiver)
