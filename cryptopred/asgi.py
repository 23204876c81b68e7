"""ASGI entry point: HTTP through Django, websockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

from core.config import prepare_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
prepare_environment()
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core import prometheus  # noqa: E402
from cryptopred.routing import websocket_urlpatterns  # noqa: E402
from cryptopred.websocket import SameSiteSession  # noqa: E402
from inference.readcache import ReadCache  # noqa: E402

prometheus.PROCESSES.labels("web").inc()  # one per uvicorn worker process

application = ProtocolTypeRouter(
    {
        # API reads (bots poll them) answered from Redis, as DRF answered them, when the data has not changed.
        "http": ReadCache(django_asgi_app),
        # Session users (the web UI, from a page of ALLOWED_HOSTS) are known to consumers; bots use a token.
        "websocket": SameSiteSession(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything loaded so far lives as long as the process: keep it out of the garbage collector's full
# passes, which otherwise stall the event loop for tens of milliseconds under load.
gc.freeze()
