from django.apps import AppConfig


class CryptopredConfig(AppConfig):
    name = "cryptopred"
    verbose_name = "cryptopred core"

    def ready(self) -> None:
        from cryptopred import checks, health  # noqa: F401  (register the system checks and /healthz components)
