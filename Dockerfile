# The touchpoints image: one image for the api, relay and worker services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY events ./events
COPY projections ./projections
COPY application ./application
COPY streams ./streams
COPY consumers ./consumers
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin touchpoints \
    && mkdir -p /data \
    && chown touchpoints:touchpoints /data

USER touchpoints
ENV TOUCHPOINTS_DATA=/data \
    TOUCHPOINTS_HOST=0.0.0.0 \
    TOUCHPOINTS_PORT=8000
VOLUME ["/data"]
EXPOSE 8000

ENTRYPOINT ["touchpoints"]
CMD ["serve"]
