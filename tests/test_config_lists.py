"""List variables (CORS_ORIGINS, TRUSTED_PROXIES): both forms operators use, each entry checked."""

import re
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path

import pytest
from dotenv import dotenv_values

from app.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
STRONG_KEY = "k7Qz-3vN9xLp2RtW8yHc5JmB0sDfGa4EuKiOq6Zn1VbX"  # random, as production asks
PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": STRONG_KEY,
    "DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
}


def from_environment(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings read the way a server reads them: from environment variables."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


@pytest.mark.parametrize(
    "value",
    [
        '["https://app.example.com","https://admin.example.com:8443"]',
        '[ "https://app.example.com" , "https://admin.example.com:8443/" ]',
        "https://app.example.com,https://admin.example.com:8443",
        " https://App.Example.com/ , https://admin.example.com:8443 ",
    ],
)
def test_origins_in_either_form_mean_the_same(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    settings = from_environment(monkeypatch, CORS_ORIGINS=value)
    assert settings.CORS_ORIGINS == ["https://app.example.com", "https://admin.example.com:8443"]


@pytest.mark.parametrize(
    "value", ['["10.0.0.0/8", "192.168.1.7", "fd00::/8"]', "10.0.0.0/8, 192.168.1.7,fd00::/8"]
)
def test_proxies_in_either_form_mean_the_same(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    settings = from_environment(monkeypatch, TRUSTED_PROXIES=value)
    expected = [ip_network("10.0.0.0/8"), ip_network("192.168.1.7/32"), ip_network("fd00::/8")]
    assert expected == settings.TRUSTED_PROXIES


def test_origins_of_other_shapes_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    value = "http://localhost:3000,http://127.0.0.1:5173,http://[::1]:8080,capacitor://localhost"
    settings = from_environment(monkeypatch, CORS_ORIGINS=value)
    assert value.split(",") == settings.CORS_ORIGINS


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CORS_ORIGINS", '["https://app.example.com"'),  # a stray bracket: not JSON
        ("CORS_ORIGINS", "[https://app.example.com]"),
        ("CORS_ORIGINS", "https://app.example.com]"),
        ("CORS_ORIGINS", '"https://app.example.com"'),  # quotes kept by a shell or Compose
        ("CORS_ORIGINS", "'https://app.example.com'"),
        ("CORS_ORIGINS", "https://app.example.com/app"),  # a path is not part of an origin
        ("CORS_ORIGINS", "https://app.example.com?x=1"),
        ("CORS_ORIGINS", "app.example.com"),  # no scheme
        ("CORS_ORIGINS", "https://app.example.com:99999"),
        ("CORS_ORIGINS", "https://*.example.com"),
        ("CORS_ORIGINS", '[["https://app.example.com"]]'),
        ("CORS_ORIGINS", '{"origin": "https://app.example.com"}'),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("TRUSTED_PROXIES", "proxy.internal"),
        ("TRUSTED_PROXIES", "[10.0.0.1]"),
        ("TRUSTED_PROXIES", "[1]"),
    ],
)
def test_a_malformed_entry_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert message.startswith(f"Invalid configuration: {name}")
    assert "\n" not in message


@pytest.mark.parametrize("value", ["*", " * ", '["*"]', '[" *"]', "https://app.example.com,*"])
def test_production_refuses_a_wildcard_origin_in_every_form(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(ConfigError, match="CORS_ORIGINS must list origins"):
        from_environment(monkeypatch, **PRODUCTION, CORS_ORIGINS=value)
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert "*" in load_settings(_env_file=None).CORS_ORIGINS


def _documented_examples() -> dict[str, list[str]]:
    """`# e.g. NAME=value` lines of .env.example, by variable."""
    examples: dict[str, list[str]] = {}
    for match in re.finditer(r"^# e\.g\. ([A-Z_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M):
        examples.setdefault(match[1], []).append(match[2])
    return examples


def test_env_example_is_read_as_written() -> None:
    """Every variable of .env.example is a setting, and the file as shipped is a valid .env."""
    documented = dotenv_values(ENV_EXAMPLE)
    documented.pop("POSTGRES_PASSWORD")  # docker-compose.yml's, not Keel's
    assert set(documented) <= set(Settings.model_fields), "unknown variables in .env.example"
    from_file = load_settings(_env_file=ENV_EXAMPLE)
    for name, value in documented.items():
        if value:  # empty values mean "unset" (env_ignore_empty)
            expected = load_settings(_env_file=None, **{name: value})
            assert getattr(from_file, name) == getattr(expected, name), name


@pytest.mark.parametrize("name", ["CORS_ORIGINS", "TRUSTED_PROXIES"])
def test_env_example_documents_both_forms_of_each_list(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    json_form, comma_form = _documented_examples()[name]
    assert json_form.startswith("[")
    assert "," in comma_form
    assert not comma_form.startswith("[")
    read = [
        getattr(from_environment(monkeypatch, **{name: form}), name)
        for form in (json_form, comma_form)
    ]
    assert read[0] == read[1]
    assert len(read[0]) == 2


def _production_server(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Start the production server exactly as deployed; a refused start exits at once."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app.main:app"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **PRODUCTION, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CORS_ORIGINS", '["*"]', "CORS_ORIGINS must list origins"),
        ("CORS_ORIGINS", "*", "CORS_ORIGINS must list origins"),
        ("CORS_ORIGINS", "https://app.example.com, *", "CORS_ORIGINS must list origins"),
        ("CORS_ORIGINS", '["https://app.example.com"', "CORS_ORIGINS: not a valid JSON list"),
        ("CORS_ORIGINS", '"https://app.example.com"', "CORS_ORIGINS.0: not an origin"),
        ("CORS_ORIGINS", "https://app.example.com/api", "CORS_ORIGINS.0: not an origin"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,proxy", "TRUSTED_PROXIES.1: not an IP address"),
    ],
)
def test_production_server_refuses_each_bad_value(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    result = _production_server(tmp_path, **{name: value})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
