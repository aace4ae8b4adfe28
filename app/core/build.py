"""What was built: Keel's version, for `keel_build_info` and the traces' `service.version`."""

import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@cache
def version() -> str:
    """The installed package's version, else the one in the pyproject.toml the code came with
    (the project is not installed as a package: `uv sync` installs its dependencies only)."""
    try:
        return metadata.version("keel")
    except metadata.PackageNotFoundError:
        pass
    try:
        with PYPROJECT.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
