"""Typed configuration from environment variables (and `.env`), validated once at start-up."""

import json
import re
import secrets
from email.utils import parseaddr
from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    EmailStr,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.core.keys import Keyring
from app.core.placeholders import is_placeholder, looks_random

Environment = Literal["development", "test", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

MIN_SECRET_KEY_BYTES = 32
# Fewer distinct characters than this and a value did not come from a random generator.
MIN_DISTINCT_IN_KEY = 8
MIN_DISTINCT_IN_PASSWORD = 4
GENERATE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
# The drivers Keel installs; `postgresql://` alone would ask SQLAlchemy for psycopg2.
DATABASE_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")
REDIS_SCHEMES = ("redis", "rediss", "unix")
SQLITE_DEFAULT_URL = "sqlite+aiosqlite:///./keel.db"
DEVELOPMENT_FRONTEND_URL = "http://localhost:3000"
# scheme://host[:port]: what a browser sends in `Origin`. The host is a DNS name, IPv4 or [IPv6].
_ORIGIN = re.compile(
    r"[a-z][a-z0-9+.-]*://"
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


class ConfigError(SystemExit):
    """Start-up refused because of configuration; its message is one readable line."""


def _list_variable(value: object) -> object:
    """A list variable in either form operators write: `["a","b"]` (JSON) or `a,b`."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not a valid JSON list ({error.msg})") from None
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ValueError("a JSON list must hold strings only")
    return [entry.strip() for entry in entries]


def _origin(value: str) -> str:
    """`*`, or an origin (`scheme://host[:port]`, one trailing slash tolerated), lower-cased."""
    if value == "*":
        return value
    origin = value.removesuffix("/").lower()
    match = _ORIGIN.fullmatch(origin)
    if match is None or int(match["port"] or 1) not in range(1, 65536):
        raise ValueError("not an origin (scheme://host[:port], no path)")
    return origin


def _database_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        url = make_url(value)
        url.port  # noqa: B018  # parsed lazily: a port that is not a number fails here
    except (ArgumentError, ValueError):
        raise ValueError("not a database URL (e.g. postgresql+asyncpg://user@host/db)") from None
    if url.drivername not in DATABASE_SCHEMES:
        supported = " or ".join(f"{scheme}://" for scheme in DATABASE_SCHEMES)
        raise ValueError(f"unsupported scheme {url.drivername!r}: use {supported}")
    return value


def _redis_url(value: str | None) -> str | None:
    """What redis-py's `from_url` accepts, checked here so that a typo is one line."""
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    database = parts.path.lstrip("/") if parts.scheme != "unix" else "0"
    if (
        parts.scheme not in REDIS_SCHEMES
        or (parts.scheme != "unix" and not parts.hostname)
        or (parts.scheme == "unix" and not parts.path)
        or port == -1
        or not (database == "" or database.isdecimal())
    ):
        raise ValueError("not a Redis URL (redis://host:6379/0, rediss://..., unix:///path)")
    return value


def _network(value: object) -> object:
    if isinstance(value, str):
        try:
            return ip_network(value, strict=False)
        except ValueError:
            raise ValueError("not an IP address or network (e.g. 10.0.0.0/8)") from None
    return value


Origin = Annotated[str, AfterValidator(_origin)]
DatabaseURL = Annotated[str | None, AfterValidator(_database_url)]
RedisURL = Annotated[str | None, AfterValidator(_redis_url)]
Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)]
ListVariable = BeforeValidator(_list_variable)


class Settings(BaseSettings):
    """Every setting Keel reads; names match the environment variables exactly."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=True,
    )

    PROJECT_NAME: str = "Keel"
    PROJECT_DESCRIPTION: str = "Users & Items REST API built on FastAPI."
    VERSION: str = "0.1.0"
    DEBUG: bool = False
    ENVIRONMENT: Environment = "development"
    API_V1_PREFIX: str = Field(default="/api/v1", pattern=r"^/[A-Za-z0-9/_-]*[A-Za-z0-9_-]$")
    DOCS_ENABLED: bool = True

    SECRET_KEY: SecretStr | None = None
    # Retired keys (README "Rotating the secret key"): what they signed still verifies; they
    # never sign.
    PREVIOUS_SECRET_KEYS: Annotated[list[SecretStr], NoDecode, ListVariable] = []
    ALGORITHM: Literal["HS256"] = "HS256"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=24 * 60)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=14, ge=1, le=365)
    JWT_ISSUER: str = "keel"
    JWT_AUDIENCE: str = "keel-api"
    FIRST_SUPERUSER_EMAIL: EmailStr | None = None
    FIRST_SUPERUSER_PASSWORD: SecretStr | None = Field(default=None, min_length=8, max_length=128)

    DATABASE_URL: DatabaseURL = None
    DATABASE_POOL_SIZE: int = Field(default=10, ge=1, le=1000)
    # No overflow by default: under steady load overflow connections are opened and closed
    # again and again (README "Sizing the database pool").
    DATABASE_MAX_OVERFLOW: int = Field(default=0, ge=0, le=1000)
    DATABASE_POOL_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0, le=300)
    DATABASE_STATEMENT_TIMEOUT_MS: int = Field(default=5_000, ge=1, le=3_600_000)
    # Admission control (CONTRACT.md 7, README "Overload"): requests each worker serves at once
    # (unset: twice the pool, DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW) and how long one may
    # wait for a slot before its 503.
    MAX_CONCURRENT_REQUESTS: int | None = Field(default=None, ge=1, le=10_000)
    ADMISSION_QUEUE_TIMEOUT_MS: int = Field(default=100, ge=1, le=60_000)
    REDIS_URL: RedisURL = None

    # Behind a connection pooler (CONTRACT.md section 11; README "Behind PgBouncer").
    # DATABASE_POOLER=transaction: DATABASE_URL is a transaction-mode pooler such as PgBouncer.
    DATABASE_POOLER: Literal["none", "transaction"] = "none"
    # Unset: DATABASE_URL. A direct PostgreSQL URL for migrations and sessions of their own.
    DATABASE_DIRECT_URL: DatabaseURL = None
    # Read by asyncpg itself when the URLs carry no password; here only to refuse a placeholder.
    PGPASSWORD: SecretStr | None = None
    # Prepared statements asyncpg and SQLAlchemy keep per connection. Unset: 100 direct, 0 (none:
    # unnamed statements) through a transaction pooler; > 0 there needs PgBouncer >= 1.21 with
    # max_prepared_statements set.
    DATABASE_STATEMENT_CACHE_SIZE: int | None = Field(default=None, ge=0, le=10_000)

    CORS_ORIGINS: Annotated[list[Origin], NoDecode, ListVariable] = []
    TRUSTED_PROXIES: Annotated[list[Network], NoDecode, ListVariable] = []
    HSTS_SECONDS: int = Field(default=0, ge=0)
    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1)
    REQUEST_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=3600)

    RATE_LIMIT_REQUESTS: int = Field(default=100, ge=1)
    RATE_LIMIT_WINDOW_SECONDS: int = Field(default=60, ge=1)
    AUTH_RATE_LIMIT_REQUESTS: int = Field(default=10, ge=1)
    AUTH_RATE_LIMIT_WINDOW_SECONDS: int = Field(default=60, ge=1)

    LOG_LEVEL: LogLevel = "INFO"
    LOG_FORMAT: Literal["json", "console"] | None = None  # None: json in production
    WORKERS: int | None = Field(default=None, ge=1, le=256)
    BIND: str = "0.0.0.0:8000"

    # Accounts by email (CONTRACT.md section 8) and background jobs (section 9).
    SMTP_HOST: str | None = None  # unset in development: emails are written to the log
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    SMTP_SECURITY: Literal["starttls", "tls", "none"] = "starttls"
    SMTP_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=600)
    EMAIL_FROM: str | None = None  # `Keel <no-reply@example.com>`
    FRONTEND_URL: str | None = None  # the base of the links in emails
    EMAIL_VERIFY_TOKEN_HOURS: int = Field(default=48, ge=1, le=24 * 30)
    PASSWORD_RESET_TOKEN_MINUTES: int = Field(default=30, ge=1, le=24 * 60)
    REFRESH_REUSE_GRACE_SECONDS: int = Field(default=10, ge=0, le=300)
    JOB_MAX_ATTEMPTS: int = Field(default=5, ge=1, le=100)
    JOB_TIMEOUT_SECONDS: float = Field(default=60.0, gt=0, le=3600)
    # Quadrupling from 60 s: 1, 4, 16 then 60 min (capped), so the 5 attempts span 81 min
    # and an hour's SMTP outage fails no email for good (CONTRACT.md section 9).
    JOB_RETRY_BASE_SECONDS: float = Field(default=60.0, gt=0, le=3600)
    JOB_SWEEP_INTERVAL_SECONDS: float = Field(default=5.0, gt=0, le=3600)
    # Finished jobs, spent account tokens and ended sessions are deleted this long after they
    # ended, by the worker's retention sweep every RETENTION_INTERVAL_SECONDS.
    RETENTION_DAYS: int = Field(default=30, ge=1, le=3650)
    RETENTION_INTERVAL_SECONDS: float = Field(default=3600.0, gt=0, le=86400)
    WORKER_CONCURRENCY: int = Field(default=10, ge=1, le=1000)
    WORKER_HEALTH_PORT: int = Field(default=9000, ge=1, le=65535)

    # Observability (CONTRACT.md section 12): both off unless set. The other OTEL_* variables
    # (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES...) are read by the SDK.
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None  # e.g. http://collector:4318
    OTEL_SDK_DISABLED: bool = False
    SENTRY_DSN: SecretStr | None = None

    _secret_generated: bool = PrivateAttr(default=False)

    @field_validator("EMAIL_FROM")
    @classmethod
    def _check_sender(cls, value: str | None) -> str | None:
        if value is not None and "@" not in parseaddr(value)[1]:
            raise ValueError("must be an address, e.g. 'Keel <no-reply@example.com>'")
        return value

    @field_validator("FRONTEND_URL")
    @classmethod
    def _check_frontend(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http(s) URL without a query, e.g. https://app.example.com")
        return value.rstrip("/")

    @field_validator("OTEL_EXPORTER_OTLP_ENDPOINT")
    @classmethod
    def _check_otlp_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None  # set but empty, as Compose writes an unset variable: tracing off
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL, e.g. http://collector:4318")
        return value.rstrip("/")

    @field_validator("SENTRY_DSN", mode="before")
    @classmethod
    def _check_sentry_dsn(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or value == "":
            return None
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.username:
            raise ValueError("must be a Sentry DSN, e.g. https://<key>@o1.ingest.sentry.io/1")
        return value

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_pooler(self) -> Self:
        if self.DATABASE_POOLER != "none" and self.database_url.startswith("sqlite"):
            raise ValueError("DATABASE_POOLER: a pooler needs a PostgreSQL DATABASE_URL")
        return self

    @model_validator(mode="after")
    def _check_production(self) -> Self:
        if self.ENVIRONMENT == "production":
            problems = list(self._production_problems())
            if problems:
                raise ValueError("; ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        problems = list(self._secret_problems())
        if self.DEBUG:
            problems.append("DEBUG must be off in production")
        if "*" in self.CORS_ORIGINS:
            problems.append("CORS_ORIGINS must list origins, not '*', in production")
        if not self.DATABASE_URL:
            problems.append("DATABASE_URL must be set in production")
        problems.extend(
            f"{name} must be set in production"
            for name in ("SMTP_HOST", "EMAIL_FROM", "FRONTEND_URL")
            if not getattr(self, name)
        )
        if self.FRONTEND_URL and not self.FRONTEND_URL.startswith("https://"):
            problems.append("FRONTEND_URL must be https:// in production (links carry tokens)")
        return problems

    def _secret_problems(self) -> list[str]:
        """SECRET_KEY and every secret the project ships an example of (CONTRACT.md section 2)."""
        problems: list[str] = []
        if not self.SECRET_KEY:
            problems.append("SECRET_KEY must be set in production")
        keys = {"SECRET_KEY": [self.SECRET_KEY] if self.SECRET_KEY else []}
        keys["PREVIOUS_SECRET_KEYS"] = self.PREVIOUS_SECRET_KEYS
        for name, secrets_of_name in keys.items():
            plain = [key.get_secret_value() for key in secrets_of_name]
            if any(is_placeholder(key) for key in plain):
                problems.append(f"{name} is a placeholder; use {GENERATE_KEY}")
            elif any(len(key.encode()) < MIN_SECRET_KEY_BYTES for key in plain):
                problems.append(f"{name} must be at least {MIN_SECRET_KEY_BYTES} bytes long")
            elif not all(looks_random(key, min_distinct=MIN_DISTINCT_IN_KEY) for key in plain):
                problems.append(f"{name} is a placeholder (not random); use {GENERATE_KEY}")
        # A user name need not look random ("apikey" is a real one); a password must.
        others = {
            "FIRST_SUPERUSER_PASSWORD": MIN_DISTINCT_IN_PASSWORD,
            "SMTP_USERNAME": 0,
            "SMTP_PASSWORD": MIN_DISTINCT_IN_PASSWORD,
            "PGPASSWORD": MIN_DISTINCT_IN_PASSWORD,
            "REDIS_URL": 0,  # its password is checked as part of the URL: a placeholder word
        }
        for name, min_distinct in others.items():
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text and (is_placeholder(text) or not looks_random(text, min_distinct=min_distinct)):
                problems.append(f"{name} is a placeholder; set the real value")
        return problems

    @property
    def is_production(self) -> bool:
        return self.ENVIRONMENT == "production"

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or SQLITE_DEFAULT_URL

    @property
    def database_direct_url(self) -> str:
        return self.DATABASE_DIRECT_URL or self.database_url

    @property
    def log_format(self) -> Literal["json", "console"]:
        return self.LOG_FORMAT or ("json" if self.is_production else "console")

    @property
    def secret_key(self) -> str:
        return self.SECRET_KEY.get_secret_value() if self.SECRET_KEY else ""

    @cached_property
    def keys(self) -> Keyring:
        """The signing and verifying keys, derived once (load_settings does it at start-up)."""
        previous = [key.get_secret_value() for key in self.PREVIOUS_SECRET_KEYS]
        return Keyring.from_secrets(self.secret_key, previous)

    @property
    def frontend_url(self) -> str:
        """Where the links in emails point; a local front end's usual address in development."""
        return self.FRONTEND_URL or DEVELOPMENT_FRONTEND_URL

    @property
    def tracing_enabled(self) -> bool:
        """OTEL_EXPORTER_OTLP_ENDPOINT set and the SDK not disabled: traces are exported."""
        return self.OTEL_EXPORTER_OTLP_ENDPOINT is not None and not self.OTEL_SDK_DISABLED

    @property
    def job_lease_seconds(self) -> float:
        """How long a started job is left to its worker before another may run it."""
        return self.JOB_TIMEOUT_SECONDS + 5

    @property
    def job_redeliver_seconds(self) -> float:
        """A job handed over but not started after this long is handed over again by the sweep;
        Redis also redelivers an unacknowledged one after it (longer than the lease, so a
        redelivered job always finds the dead worker's lease expired)."""
        return self.job_lease_seconds + 5

    @property
    def email_from(self) -> str:
        return self.EMAIL_FROM or f"{self.PROJECT_NAME} <no-reply@localhost>"

    @property
    def secret_key_generated(self) -> bool:
        return self._secret_generated


def _describe(error: ValidationError) -> str:
    """One line naming each bad variable: `DATABASE_POOL_SIZE: Input should be ... (got 'abc')`."""
    parts = []
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        shown = f" (got {got!r})" if name and isinstance(got, str | int | float) else ""
        if "SECRET" in name or "PASSWORD" in name or name.endswith("_URL"):
            shown = ""  # a URL may hold a password
        parts.append(f"{name}: {message}{shown}" if name else message)
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Build Settings or stop with one readable line (never a traceback wall)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(f"Invalid configuration: {_describe(error)}") from None
    if settings.SECRET_KEY is None:
        # Development only (production refused above): a per-process key, so tokens die on restart.
        settings.SECRET_KEY = SecretStr(secrets.token_urlsafe(48))
        settings._secret_generated = True
    settings.keys  # noqa: B018  # derived now, not on the first request
    return settings


@lru_cache
def get_settings() -> Settings:
    return load_settings()
