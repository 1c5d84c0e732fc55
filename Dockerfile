# syntax=docker/dockerfile:1
# The hub's image: `hub` is the entry point (serve, relay, worker, beat, migrate, backup …).
# Build: docker build -t integrations-hub:$(git describe --tags) .

# --- build: the wheel and every dependency, into a virtualenv ---------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# compilers only here, for any dependency without a wheel for this platform
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY tenants ./tenants
COPY connectors ./connectors
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install /wheels/*.whl \
    && python -m compileall -q /opt/venv

# --- runtime: the virtualenv, the PostgreSQL client tools for `hub backup`, a user ------
FROM python:3.11-slim
# pg_dump must be at least the server's major version: pass e.g. postgresql-client-16
# from the PostgreSQL apt repository when the server is newer than Debian's client
ARG PG_CLIENT=postgresql-client
RUN apt-get update \
    && apt-get install -y --no-install-recommends "${PG_CLIENT}" \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /var/lib/hub --no-create-home --shell /usr/sbin/nologin hub \
    && install -d -o hub -g hub -m 0750 /var/lib/hub /backups
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HUB_ENV=production \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=8000 \
    HUB_VAR_DIR=/var/lib/hub
# numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd
USER 10001:10001
WORKDIR /var/lib/hub
EXPOSE 8000
ENTRYPOINT ["hub"]
CMD ["serve"]
