"""Typed configuration from environment variables (and `.env`), validated once at start-up."""

import json
import re
import secrets
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal, Self

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

Environment = Literal["development", "test", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

MIN_SECRET_KEY_BYTES = 32
# Values copied from examples and tutorials; refusing them stops a fork going live on a known key.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "secret-key",
        "your-secret-key",
        "your_secret_key",
        "replace-me-with-a-long-random-string-of-at-least-32-bytes",
    }
)
SQLITE_DEFAULT_URL = "sqlite+aiosqlite:///./keel.db"
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


def _network(value: object) -> object:
    if isinstance(value, str):
        try:
            return ip_network(value, strict=False)
        except ValueError:
            raise ValueError("not an IP address or network (e.g. 10.0.0.0/8)") from None
    return value


Origin = Annotated[str, AfterValidator(_origin)]
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
    ALGORITHM: Literal["HS256"] = "HS256"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=24 * 60)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=14, ge=1, le=365)
    JWT_ISSUER: str = "keel"
    JWT_AUDIENCE: str = "keel-api"
    FIRST_SUPERUSER_EMAIL: EmailStr | None = None
    FIRST_SUPERUSER_PASSWORD: SecretStr | None = Field(default=None, min_length=8, max_length=128)

    DATABASE_URL: str | None = None
    DATABASE_POOL_SIZE: int = Field(default=10, ge=1, le=1000)
    # No overflow by default: under steady load overflow connections are opened and closed
    # again and again (README "Sizing the database pool").
    DATABASE_MAX_OVERFLOW: int = Field(default=0, ge=0, le=1000)
    DATABASE_POOL_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0, le=300)
    DATABASE_STATEMENT_TIMEOUT_MS: int = Field(default=5_000, ge=1, le=3_600_000)
    REDIS_URL: str | None = None

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

    _secret_generated: bool = PrivateAttr(default=False)

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_production(self) -> Self:
        if self.ENVIRONMENT == "production":
            problems = list(self._production_problems())
            if problems:
                raise ValueError("; ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        problems = []
        key = self.SECRET_KEY.get_secret_value() if self.SECRET_KEY else ""
        if not key:
            problems.append("SECRET_KEY must be set in production")
        elif key.strip().lower() in PLACEHOLDER_SECRETS:
            problems.append("SECRET_KEY is a known placeholder; generate a random one")
        elif len(key.encode()) < MIN_SECRET_KEY_BYTES:
            problems.append(f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes long")
        if self.DEBUG:
            problems.append("DEBUG must be off in production")
        if "*" in self.CORS_ORIGINS:
            problems.append("CORS_ORIGINS must list origins, not '*', in production")
        if not self.DATABASE_URL:
            problems.append("DATABASE_URL must be set in production")
        return problems

    @property
    def is_production(self) -> bool:
        return self.ENVIRONMENT == "production"

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or SQLITE_DEFAULT_URL

    @property
    def log_format(self) -> Literal["json", "console"]:
        return self.LOG_FORMAT or ("json" if self.is_production else "console")

    @property
    def secret_key(self) -> str:
        return self.SECRET_KEY.get_secret_value() if self.SECRET_KEY else ""

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
        if "SECRET" in name or "PASSWORD" in name:
            shown = ""
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
    return settings


@lru_cache
def get_settings() -> Settings:
    return load_settings()
