"""Configuration: development defaults work; production refuses unsafe values in one line."""

import subprocess
import sys

import pytest

from app.config import ConfigError, Settings, load_settings

STRONG_KEY = "k7Qz-3vN9xLp2RtW8yHc5JmB0sDfGa4EuKiOq6Zn1VbX"  # random, as production asks


def prod(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "_env_file": None,
        "ENVIRONMENT": "production",
        "SECRET_KEY": STRONG_KEY,
        "DATABASE_URL": "postgresql+asyncpg://u@db/keel",
        "SMTP_HOST": "smtp.example.com",
        "EMAIL_FROM": "Keel <no-reply@example.com>",
        "FRONTEND_URL": "https://app.example.com",
    }
    values.update(overrides)
    return load_settings(**values)


def test_development_defaults_just_work() -> None:
    settings = load_settings(_env_file=None)
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.secret_key_generated
    assert len(settings.secret_key) >= 32
    assert settings.log_format == "console"
    assert settings.API_V1_PREFIX == "/api/v1"


def test_production_accepts_safe_settings() -> None:
    settings = prod(CORS_ORIGINS="https://app.example.com, https://admin.example.com/")
    assert settings.CORS_ORIGINS == ["https://app.example.com", "https://admin.example.com"]
    assert settings.log_format == "json"
    assert not settings.secret_key_generated


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 bytes"),
        ({"SECRET_KEY": "changeme"}, "SECRET_KEY is a placeholder"),
        ({"DEBUG": True}, "DEBUG must be off"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS must list origins"),
        ({"DATABASE_URL": None}, "DATABASE_URL must be set"),
        ({"SMTP_HOST": None}, "SMTP_HOST must be set"),
        ({"EMAIL_FROM": None}, "EMAIL_FROM must be set"),
        ({"FRONTEND_URL": None}, "FRONTEND_URL must be set"),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        prod(**overrides)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_malformed_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, DATABASE_POOL_SIZE="abc")
    assert str(caught.value).startswith("Invalid configuration: DATABASE_POOL_SIZE:")
    assert "'abc'" in str(caught.value)


def test_secret_values_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        prod(SECRET_KEY="tooshort-but-secret")
    assert "tooshort-but-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ENVIRONMENT": "production", "SECRET_KEY": "short"}, "SECRET_KEY must be at least"),
        ({"DATABASE_POOL_SIZE": "abc"}, "DATABASE_POOL_SIZE"),
    ],
)
def test_server_start_is_refused_with_one_line(env: dict[str, str], expected: str) -> None:
    """Importing the app (what uvicorn and gunicorn do) stops with one line, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-c", "import app.main"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRONTEND_URL", "app.example.com"),
        ("FRONTEND_URL", "ftp://app.example.com"),
        ("FRONTEND_URL", "https://app.example.com/?next=1"),
        ("EMAIL_FROM", "Keel"),
        ("SMTP_SECURITY", "ssl"),
        ("SMTP_PORT", "abc"),
    ],
)
def test_email_settings_refuse_malformed_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, **{name: value})
    assert name in str(caught.value)


def test_frontend_url_loses_its_trailing_slash_and_has_a_development_default() -> None:
    assert load_settings(_env_file=None).frontend_url == "http://localhost:3000"
    settings = load_settings(_env_file=None, FRONTEND_URL="https://app.example.com/base/")
    assert settings.frontend_url == "https://app.example.com/base"
