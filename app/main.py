"""The application factory: `create_app(settings)`; servers import `app.main:app`."""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.middleware import Middleware

from app.api import health
from app.api import metrics as metrics_api
from app.api.docs import install_docs
from app.api.v1 import router as api_v1
from app.api.v1.schemas.common import error_responses
from app.config import Settings, get_settings
from app.core import database, error_reporting, metrics
from app.core.exceptions import register_exception_handlers
from app.core.logging import configure_logging
from app.core.middleware import edge_layers
from app.core.rate_limit import RateLimiter, RateLimitMiddleware
from app.core.tracing import (
    API_SERVICE,
    TELEMETRY_OFF,
    Tracing,
    UntracedPathsMiddleware,
    build_tracing,
)
from app.jobs.queue import build_queue
from app.services import user_service

logger = structlog.get_logger("app.main")

SUPERUSER_WAIT_SECONDS: Final = 5.0  # at start-up; past it the superuser is made in the background
SUPERUSER_RETRY_MAX_SECONDS: Final = 30.0

COMMON_ERRORS = error_responses(
    {
        400: "Malformed request",
        413: "Request body too large",
        415: "Unsupported media type",
        422: "Validation error",
        429: "Rate limited",
        500: "Internal error",
        503: "Service unavailable",
    }
)


def _announce_embedded_defaults(settings: Settings) -> None:
    """Say once, loudly, when a process runs on the stand-ins meant for a laptop."""
    if settings.DATABASE_URL is None:
        logger.warning("database_url_unset", using=settings.database_url)
    if settings.REDIS_URL is None:
        logger.warning("redis_url_unset", rate_limiting="in-process, per worker")
    if settings.SMTP_HOST is None:
        logger.warning("smtp_host_unset", emails="written to the log, links included")
    if settings.REDIS_URL is None:
        logger.warning("jobs_in_process", note="no REDIS_URL: this process runs the jobs")
    if settings.secret_key_generated:
        logger.warning("secret_key_generated", note="tokens stop working when the process exits")


async def _ensure_superuser(
    sessionmaker: async_sessionmaker[AsyncSession], *, email: str, password: str
) -> None:
    """FIRST_SUPERUSER_*, tried until the database answers: a database that is down at start-up
    leaves the worker alive and not ready (readiness asks the database), never crash-looping."""
    delay = 1.0
    while True:
        try:
            await user_service.ensure_superuser(sessionmaker, email=email, password=password)
            return
        except Exception as error:
            logger.warning("first_superuser_not_yet", error=repr(error), retry_in_seconds=delay)
        await asyncio.sleep(delay)
        delay = min(2 * delay, SUPERUSER_RETRY_MAX_SECONDS)


async def _close(app: FastAPI, rate_limiter: RateLimiter, tracing: Tracing | None) -> None:
    """What the lifespan opened, in reverse, once the last request has been answered."""
    await app.state.jobs.close()  # hand-overs and in-process jobs, briefly
    metrics.release_pool(app.state.engine)
    await app.state.engine.dispose()
    await app.state.probe_engine.dispose()
    await rate_limiter.close()
    if tracing is not None:
        tracing.shutdown()  # exports what is left
    error_reporting.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    rate_limiter = RateLimiter(settings)
    tracing = build_tracing(settings, API_SERVICE)  # None unless OTEL_EXPORTER_OTLP_ENDPOINT

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Logging is configured here, after a Gunicorn worker has installed its own handlers.
        configure_logging(settings)
        _announce_embedded_defaults(settings)
        error_reporting.init(settings)  # Sentry, with SENTRY_DSN only
        engine = database.create_engine(settings)
        metrics.instrument_pool(engine)  # before any checkout, so checkouts and checkins pair up
        app.state.engine = engine
        app.state.sessionmaker = database.create_sessionmaker(engine)
        app.state.read_engine = database.create_read_engine(engine)
        app.state.probe_engine = database.create_engine(settings, probe_for=engine)
        if tracing is not None:
            tracing.start(engine, redis=True)
        superuser: asyncio.Task[None] | None = None
        if settings.FIRST_SUPERUSER_EMAIL and settings.FIRST_SUPERUSER_PASSWORD:
            superuser = asyncio.create_task(
                _ensure_superuser(
                    app.state.sessionmaker,
                    email=settings.FIRST_SUPERUSER_EMAIL,
                    password=settings.FIRST_SUPERUSER_PASSWORD.get_secret_value(),
                )
            )
            # Usually done in milliseconds, before the first request is served.
            await asyncio.wait({superuser}, timeout=SUPERUSER_WAIT_SECONDS)
        await rate_limiter.open()
        app.state.jobs = build_queue(settings, app.state.sessionmaker, tracing)
        await app.state.jobs.start()
        process_metrics = metrics.start_process_metrics()
        if settings.REDIS_URL:
            app.state.redis_ping = rate_limiter.ping
        # Everything built so far lives as long as the worker: move it out of the garbage
        # collector's sight, so its collections stay short under load (tail latency).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            app.state.draining = True
            if superuser is not None:
                superuser.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await superuser
            await metrics.stop_process_metrics(process_metrics)
            await _close(app, rate_limiter, tracing)

    docs = settings.DOCS_ENABLED
    app = FastAPI(
        title=settings.PROJECT_NAME,
        description=settings.PROJECT_DESCRIPTION,
        version=settings.VERSION,
        debug=settings.DEBUG,
        openapi_url=f"{settings.API_V1_PREFIX}/openapi.json" if docs else None,
        # Self-hosted by install_docs below: FastAPI's own pages use a CDN and inline scripts.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry makes the server spans, on Keel's provider, when tracing
        # is on; off, it is switched off rather than looking for a provider on every request.
        telemetry=tracing.fastapi_telemetry() if tracing else TELEMETRY_OFF,
        responses=COMMON_ERRORS,
        # Operation ids are the endpoint names (`create_item`): stable, readable client names.
        generate_unique_id_function=lambda route: route.name,
        # Pure ASGI, outermost first: the edge's layers, then the rate limiter, so that its
        # 429s get the edge's headers and are logged and counted like any other answer.
        middleware=[
            *([Middleware(UntracedPathsMiddleware)] if tracing else []),
            *edge_layers(settings),
            Middleware(RateLimitMiddleware, limiter=rate_limiter, settings=settings),
        ],
    )
    app.state.settings = settings
    app.state.draining = False
    app.state.rate_limiter = rate_limiter
    app.state.tracing = tracing
    register_exception_handlers(app)
    # Routes are matched in order: the busiest first (probes are few and cheap to test).
    app.include_router(health.router)
    for router in api_v1.routers:
        app.include_router(router, prefix=settings.API_V1_PREFIX)
    app.include_router(metrics_api.router)
    if docs:
        install_docs(app)
    return app


app = create_app()
