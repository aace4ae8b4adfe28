"""Secrets no one may go live with: the project's own examples, and values that are plainly fake.

The examples are read from the files the project ships (`EXAMPLE_FILES`, relative to the project
root), so a new example is refused the day it is written. The Docker image copies those files
beside the code (Dockerfile); wherever they are absent, the tell-tale words and the randomness
rule below still hold, and every shipped example contains `REPLACE` (tests/test_config_secrets.py).
"""

import json
import re
from functools import cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILES = (".env.example", "deploy/k8s/secret.example.yaml")
# Every setting that holds a secret (or, like SMTP_USERNAME, sits in the Secret beside them).
SECRET_VARIABLES = frozenset(
    {
        "SECRET_KEY",
        "PREVIOUS_SECRET_KEYS",
        "FIRST_SUPERUSER_PASSWORD",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "PGPASSWORD",
        "REDIS_URL",  # in the Secret: it carries Redis's password
    }
)
MARKERS = ("replace", "changeme", "change-me", "change_me", "changethis")
# Values copied from tutorials: refusing them stops a fork going live on a published key.
KNOWN = frozenset({"secret", "secret-key", "your-secret-key", "your_secret_key", "password"})
# `NAME=value` (.env) or `NAME: value` (YAML), commented out or not: an example either way.
_ASSIGNMENT = re.compile(
    r"^[ \t]*(?:#[ \t]*)?(?P<name>[A-Z][A-Z0-9_]*)[ \t]*(?:=|:[ \t])[ \t]*(?P<value>.*?)[ \t]*$",
    flags=re.M,
)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _entries(value: str) -> list[str]:
    """A list variable's entries (JSON or comma form); any other value is one entry."""
    if value.startswith("["):
        try:
            entries = json.loads(value)
        except json.JSONDecodeError:
            return [value]
        return [str(entry).strip() for entry in entries] if isinstance(entries, list) else [value]
    return [part.strip() for part in value.split(",") if part.strip()]


@cache
def shipped_examples(root: Path = PROJECT_ROOT) -> frozenset[str]:
    """Every value the example files under `root` give a secret variable."""
    values: set[str] = set()
    for relative in EXAMPLE_FILES:
        path = root / relative
        if not path.is_file():
            continue
        for match in _ASSIGNMENT.finditer(path.read_text(encoding="utf-8")):
            if match["name"] in SECRET_VARIABLES:
                values.update(_entries(_unquote(match["value"])))
    return frozenset(values)


def is_placeholder(value: str) -> bool:
    """A shipped example, a tell-tale word or a tutorial value."""
    folded = value.strip().lower()
    return (
        value.strip() in shipped_examples()
        or folded in KNOWN
        or any(marker in folded for marker in MARKERS)
    )


def looks_random(value: str, *, min_distinct: int) -> bool:
    """False for what no random generator writes: one character repeated, `abab...`."""
    return len(set(value)) >= min_distinct
