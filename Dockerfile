# Application image for docker-compose.yml: web, worker, streams and beat all run it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    CRYPTOPRED_DATA_DIR=/app/var

WORKDIR /app
COPY requirements.lock .
RUN pip install -r requirements.lock

COPY . .
# /metrics: the compose file's shared volume of Prometheus metric files (a new volume copies this owner).
RUN useradd --system --home /app cryptopred && mkdir -p /app/var /metrics && chown cryptopred /app/var /metrics
USER cryptopred

EXPOSE 8000
CMD ["python", "-m", "uvicorn", "cryptopred.asgi:application", "--http", "cryptopred.http:HeaderTimeoutProtocol", "--host", "0.0.0.0", "--port", "8000", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--lifespan", "off"]
