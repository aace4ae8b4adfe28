"""Schemathesis hooks (SCHEMATHESIS_HOOKS=fuzz_hooks), used by scripts/fuzz.py.

Every token belongs to a throwaway account: a superuser created straight in the database
(KEEL_FUZZ_ROLE=superuser, so fuzzed requests reach every route) or a normal user registered
through the API (KEEL_FUZZ_ROLE=user, as most clients are). A fuzzed logout, password change or
self-deletion only ends that throwaway account: on the next 401 Schemathesis asks for a new one.
"""

import asyncio
import os
import uuid
from typing import Any

import requests
import schemathesis

from app.config import load_settings
from app.core import database
from app.services import user_service

BASE_URL = os.environ["KEEL_FUZZ_URL"]
ROLE = os.environ.get("KEEL_FUZZ_ROLE", "superuser")
PASSWORD = "fuzzing password 0123"


async def _create_superuser(email: str) -> None:
    settings = load_settings()
    engine = database.create_engine(settings)
    try:
        sessionmaker = database.create_sessionmaker(engine)
        await user_service.ensure_superuser(sessionmaker, email=email, password=PASSWORD)
    finally:
        await engine.dispose()


def _register(email: str) -> None:
    response = requests.post(
        f"{BASE_URL}/api/v1/auth/register",
        json={"email": email, "password": PASSWORD},
        timeout=30,
    )
    response.raise_for_status()


@schemathesis.auth(refresh_interval=600)
class ThrowawaySuperuser:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
        if ROLE == "superuser":
            asyncio.run(_create_superuser(email))
        else:
            _register(email)
        response = requests.post(
            f"{BASE_URL}/api/v1/auth/token",
            data={"username": email, "password": PASSWORD},
            timeout=30,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def set(self, case: schemathesis.Case, data: Any, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
