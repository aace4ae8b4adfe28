"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz_hooks), used by scripts/fuzz.py.

Every token belongs to a throwaway superuser created straight in the database, so fuzzed
requests reach every route, and a fuzzed logout, password change or self-deletion only ends
that throwaway account: on the next 401 Schemathesis asks for a fresh one.
"""

import asyncio
import os
import uuid
from typing import Any

import email_validator
import requests
import schemathesis
from hypothesis import strategies as st

from app.config import load_settings
from app.core import database
from app.services import user_service

BASE_URL = os.environ["KEEL_FUZZ_URL"]
PASSWORD = "fuzzing password 0123"


async def _create_superuser(email: str) -> None:
    settings = load_settings()
    engine = database.create_engine(settings)
    try:
        sessionmaker = database.create_sessionmaker(engine)
        await user_service.ensure_superuser(sessionmaker, email=email, password=PASSWORD)
    finally:
        await engine.dispose()


def _deliverable(address: str) -> bool:
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


# Keel's `format: email` means a deliverable address (special-use domains such as .test are
# refused, as the schema's description says): generate those.
schemathesis.openapi.format("email", st.emails().filter(_deliverable))


@schemathesis.auth(refresh_interval=600)
class ThrowawaySuperuser:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
        asyncio.run(_create_superuser(email))
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
