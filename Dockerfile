# cardmon: the monitor and the simulators (one image; docker-compose.yml runs both).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor monitor
COPY simulators simulators
COPY rules rules
COPY schemas schemas
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data cardmon \
    && mkdir -p /data \
    && chown cardmon /data

# /data holds the VIP registry, the alert store (SQLite outbox) and alerts.jsonl.
VOLUME ["/data"]
USER cardmon
EXPOSE 9464
CMD ["cardmon", "run"]
