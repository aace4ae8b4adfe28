"""Secrets in production (CONTRACT.md section 2): no shipped example, no placeholder, no key that
is plainly not random, no malformed URL ever starts the server; each refusal is one line."""

import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from app.config import ConfigError, Settings, load_settings
from app.core import placeholders

ROOT = Path(__file__).resolve().parent.parent
SECRET_EXAMPLE = ROOT / "deploy" / "k8s" / "secret.example.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
KEY = secrets.token_urlsafe(48)
PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": KEY,
    "DATABASE_URL": "postgresql+asyncpg://keel@db.internal:5432/keel",
    "SMTP_HOST": "smtp.example.com",
    "EMAIL_FROM": "Keel <no-reply@example.com>",
    "FRONTEND_URL": "https://app.example.com",
    # Nothing should start; if something does, it fails at once on an address it cannot bind
    # rather than taking a port another test or engineer uses.
    "BIND": "192.0.2.1:18299",
}
# Shipped in the Secret but not secret: the address is an ordinary example value.
NOT_SECRET = {"FIRST_SUPERUSER_EMAIL"}


def shipped_secret() -> dict[str, str]:
    """The example Secret's entries as shipped, the commented-out ones (shown for when they are
    needed, e.g. PREVIOUS_SECRET_KEYS while rotating) included."""
    text = SECRET_EXAMPLE.read_text()
    uncommented = re.sub(r"^(\s+)# ([A-Z][A-Z0-9_]*: )", r"\1\2", text, flags=re.M)
    entries: dict[str, str] = yaml.safe_load(uncommented)["stringData"]
    return entries


def shipped_examples() -> list[tuple[str, str, str]]:
    """(file, variable, value as shipped) for every secret the project ships an example of."""
    from_secret = [
        ("secret.example.yaml", name, value)
        for name, value in shipped_secret().items()
        if name not in NOT_SECRET
    ]
    from_env = [
        (".env.example", name, value)
        for name, value in dotenv_values(ENV_EXAMPLE).items()
        if value and name in placeholders.SECRET_VARIABLES
    ]
    return from_secret + from_env


def production_server(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Start the production server exactly as deployed; a refused start exits at once."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app.main:app"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def refused_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def prod(**overrides: Any) -> Settings:
    return load_settings(_env_file=None, **(PRODUCTION | overrides))


def refusal(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        prod(**overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_shipped_secret_is_covered() -> None:
    """The examples this file tests are the ones the project ships (nothing silently skipped)."""
    names = {name for _, name, _ in shipped_examples()}
    assert {"SECRET_KEY", "FIRST_SUPERUSER_PASSWORD", "SMTP_PASSWORD"} <= names
    assert "PREVIOUS_SECRET_KEYS" in names  # the Secret shows where it goes
    assert names <= placeholders.SECRET_VARIABLES


def test_every_shipped_example_says_replace() -> None:
    """Where the example files are absent (a wheel, a trimmed image), the tell-tale word alone
    still refuses every example the project ships."""
    for source, name, value in shipped_examples():
        assert "replace" in value.lower(), (source, name)


@pytest.mark.parametrize(
    ("source", "name", "value"), shipped_examples(), ids=lambda part: str(part)[:24]
)
def test_production_server_refuses_each_shipped_example(
    tmp_path: Path, source: str, name: str, value: str
) -> None:
    line = refused_line(production_server(tmp_path, **(PRODUCTION | {name: value})))
    assert f"{name} is a placeholder" in line, (source, line)
    assert value not in line  # a secret is never echoed, not even a placeholder


def test_production_server_refuses_the_example_files_as_shipped(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "k8s" / "config" / "configmap.yaml").read_text())[
        "data"
    ]
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text())["stringData"]
    line = refused_line(
        production_server(tmp_path, **(config | secret | {"BIND": PRODUCTION["BIND"]}))
    )
    for name in ("SECRET_KEY", "FIRST_SUPERUSER_PASSWORD", "SMTP_PASSWORD"):
        assert f"{name} is a placeholder" in line

    env_file = {name: value for name, value in dotenv_values(ENV_EXAMPLE).items() if value}
    line = refused_line(
        production_server(
            tmp_path, **(env_file | {"ENVIRONMENT": "production", "BIND": PRODUCTION["BIND"]})
        )
    )
    assert "SECRET_KEY is a placeholder" in line


@pytest.mark.parametrize(
    "key",
    [
        "a" * 48,
        "ab" * 24,
        "abcdef" * 8,  # six distinct characters: not what a random key looks like
        "REPLACE-with-at-least-32-random-bytes",
        "my-key-Replace-me-0123456789-abcdefghijklmnop",
        "CHANGEME-0123456789-abcdefghijklmnopqrstuvwxyz",
        "please-change-me-0123456789-abcdefghijklmnopqrst",
        "replace-me-with-a-long-random-string-of-at-least-32-bytes",
    ],
)
def test_production_refuses_a_key_that_is_not_random(key: str) -> None:
    message = refusal(SECRET_KEY=key)
    assert "SECRET_KEY is a placeholder" in message
    assert key not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FIRST_SUPERUSER_PASSWORD", "change-me-please"),
        ("FIRST_SUPERUSER_PASSWORD", "aaaaaaaaaaaa"),
        ("SMTP_PASSWORD", "REPLACE"),
        ("SMTP_USERNAME", "REPLACE"),
        ("PGPASSWORD", "REPLACE-with-the-keel-role-password"),
        ("PREVIOUS_SECRET_KEYS", f"{secrets.token_urlsafe(48)},{'x' * 48}"),
        ("PREVIOUS_SECRET_KEYS", '["REPLACE-with-the-retired-key-0123456789-abcdef"]'),
    ],
)
def test_production_refuses_placeholders_of_every_secret(name: str, value: str) -> None:
    message = refusal(**{name: value})
    assert f"{name} is a placeholder" in message
    assert value not in message


def test_production_accepts_random_secrets() -> None:
    settings = prod(
        PREVIOUS_SECRET_KEYS=f"{secrets.token_urlsafe(48)},{secrets.token_hex(32)}",
        FIRST_SUPERUSER_EMAIL="admin@example.com",
        FIRST_SUPERUSER_PASSWORD="correct horse battery staple",
        SMTP_USERNAME="keel-mailer",
        SMTP_PASSWORD=secrets.token_urlsafe(24),
    )
    assert len(settings.PREVIOUS_SECRET_KEYS) == 2


def test_placeholders_come_from_the_example_files(tmp_path: Path) -> None:
    """A value shipped in an example is refused even with no tell-tale word in it."""
    (tmp_path / ".env.example").write_text(
        "SECRET_KEY=our-local-demo-key-0123456789-abcdefghijkl\n"
    )
    (tmp_path / "deploy" / "k8s").mkdir(parents=True)
    (tmp_path / "deploy" / "k8s" / "secret.example.yaml").write_text(
        "stringData:\n  SMTP_PASSWORD: 'mailer-demo-pass-0123'\n"
        "  # PREVIOUS_SECRET_KEYS: '[\"retired-demo-key-0123456789-abcdefghijklm\"]'\n"
    )
    assert placeholders.shipped_examples(tmp_path) == {
        "our-local-demo-key-0123456789-abcdefghijkl",
        "mailer-demo-pass-0123",
        "retired-demo-key-0123456789-abcdefghijklm",
    }


@pytest.mark.parametrize("document", ["README.md", "deploy/k8s/secret.example.yaml"])
def test_examples_written_in_the_documentation_are_refused(document: str) -> None:
    """`NAME=value` examples in prose and commands (`--from-literal=SECRET_KEY=...`)."""
    names = "|".join(sorted(placeholders.SECRET_VARIABLES))
    found = re.findall(rf"\b({names})=([^\s`]+)", (ROOT / document).read_text())
    examples = [(name, value.strip("'\"")) for name, value in found if "$(" not in value]
    assert examples
    for name, value in examples:
        with pytest.raises(ConfigError):
            prod(**{name: value})


def test_the_runtime_reader_finds_what_a_yaml_and_a_dotenv_parser_find() -> None:
    """The check reads the example files without a YAML library: it finds the same values."""
    expected = {value for _, _, value in shipped_examples()}
    expected = {entry.strip("[]\"' ") for value in expected for entry in value.split(",")}
    assert placeholders.shipped_examples(ROOT) == expected


def test_the_image_ships_the_example_files() -> None:
    """In the container the check reads the same files: the Dockerfile copies them."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    copied = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    for relative in placeholders.EXAMPLE_FILES:
        assert f"!{relative}" in ignored
        assert any(relative in sources for sources in copied), relative


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("FRONTEND_URL", "http://app.example.com", "FRONTEND_URL must be https://"),
        ("DATABASE_URL", "not a url", "DATABASE_URL: not a database URL"),
        ("DATABASE_URL", "postgresql+asyncpg://keel@db:abc/keel", "DATABASE_URL: not a database"),
        ("DATABASE_URL", "mysql+aiomysql://keel@db/keel", "DATABASE_URL: unsupported scheme"),
        ("DATABASE_URL", "postgresql://keel@db/keel", "DATABASE_URL: unsupported scheme"),
        ("DATABASE_DIRECT_URL", "postgres://keel@db/keel", "DATABASE_DIRECT_URL: unsupported"),
        ("REDIS_URL", "redis//localhost", "REDIS_URL: not a Redis URL"),
        ("REDIS_URL", "http://localhost:6379/0", "REDIS_URL: not a Redis URL"),
        ("REDIS_URL", "redis://localhost:abc/0", "REDIS_URL: not a Redis URL"),
        ("REDIS_URL", "redis://localhost:6379/x", "REDIS_URL: not a Redis URL"),
        ("REDIS_URL", "redis:///0", "REDIS_URL: not a Redis URL"),
    ],
)
def test_production_server_refuses_a_bad_url_in_one_line(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    line = refused_line(production_server(tmp_path, **(PRODUCTION | {name: value})))
    assert expected in line


def test_a_bad_url_is_never_echoed() -> None:
    """A URL may hold a password: the refusal names the variable, not the value."""
    message = refusal(DATABASE_URL="postgresql+asyncpg://keel:hunter2-pw@db:abc/keel")
    assert message.startswith("Invalid configuration: DATABASE_URL: not a database URL")
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "sqlite+aiosqlite:///./keel.db"),
        ("DATABASE_URL", "postgresql+asyncpg://keel:pw@db.internal:5432/keel?ssl=require"),
        ("DATABASE_URL", "postgresql+asyncpg:///keel"),  # a Unix socket
        ("REDIS_URL", "redis://redis:6379/0"),
        ("REDIS_URL", "rediss://:pw@redis.internal:6380"),
        ("REDIS_URL", "unix:///run/redis.sock?db=2"),
    ],
)
def test_supported_urls_are_accepted(name: str, value: str) -> None:
    assert getattr(prod(**{name: value}), name) == value


def test_development_keeps_an_http_front_end() -> None:
    settings = load_settings(_env_file=None, FRONTEND_URL="http://localhost:5173")
    assert settings.frontend_url == "http://localhost:5173"
