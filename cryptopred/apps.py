from django.apps import AppConfig


class CryptopredConfig(AppConfig):
    name = "cryptopred"
    verbose_name = "cryptopred core"
