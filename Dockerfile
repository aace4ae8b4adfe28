# syntax=docker/dockerfile:1
# Keel's production image: `docker build -t keel .` then see docker-compose.yml or deploy/k8s/.
ARG PYTHON_VERSION=3.11

# --- build: resolve the locked dependencies into /opt/venv (no compilers reach the runtime) ---
FROM python:${PYTHON_VERSION}-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# --- runtime: the interpreter, the venv and the code that runs; nothing else ---
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    LOG_FORMAT=json \
    BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/keel-metrics
RUN groupadd --system --gid 10001 keel \
    && useradd --system --uid 10001 --gid keel --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin keel
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# pyproject.toml: the build's version (keel_build_info, traces' service.version).
COPY alembic.ini gunicorn.conf.py pyproject.toml ./
COPY alembic ./alembic
COPY app ./app
# The shipped examples: production refuses their values (app/core/placeholders.py reads them).
COPY .env.example ./
COPY deploy/k8s/secret.example.yaml ./deploy/k8s/
# Compiled now: the root filesystem is read-only at run time (Kubernetes, compose).
RUN python -m compileall -q app alembic gunicorn.conf.py
USER 10001:10001
EXPOSE 8000
# python, not curl: the slim image has no curl. Follows BIND's port; non-2xx or no answer fails.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('BIND', ':8000').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=4)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app.main:app"]
