from django.apps import AppConfig


class MarketsConfig(AppConfig):
    name = "markets"

    def ready(self) -> None:
        from markets.streams import health  # noqa: F401 - registers the /healthz component
