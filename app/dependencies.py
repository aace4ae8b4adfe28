"""Annotated dependency aliases used by the endpoints."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.context import user_id_var
from app.core.exceptions import ForbiddenError, UnauthorizedError
from app.core.security import VERIFIED_CLAIMS
from app.models import User
from app.services import auth_service
from app.services.auth_service import Authenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_settings_dep(request: Request) -> Settings:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed before the response is sent.

    Used with `scope="function"`: FastAPI then finishes this generator when the endpoint returns,
    before the response goes out, so a failed commit becomes an error response, never a 2xx.
    """
    # Safe methods never write (HTTP semantics, and Keel's own rule): no transaction needed.
    state = request.app.state
    read_only = request.method in SAFE_METHODS
    sessionmaker: async_sessionmaker[AsyncSession] = (
        state.read_sessionmaker if read_only else state.sessionmaker
    )
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# Relative to the OpenAPI document (under API_V1_PREFIX), which is how Swagger UI resolves it.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token", auto_error=False)


async def get_authenticated(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Authenticated:
    """The caller's user and session, from a bearer access token; 401 otherwise."""
    if not token:
        raise UnauthorizedError("Not authenticated")
    verified = getattr(request.state, VERIFIED_CLAIMS, None)  # left by the rate limiter
    auth = await auth_service.authenticate(session, settings, token, verified=verified)
    user_id = str(auth.user.id)
    user_id_var.set(user_id)
    request.state.user_id = user_id  # for the access log, which runs outside this context
    return auth


AuthDep = Annotated[Authenticated, Depends(get_authenticated)]


async def get_current_user(auth: AuthDep) -> User:
    return auth.user


async def get_superuser(user: Annotated[User, Depends(get_current_user)]) -> User:
    if not user.is_superuser:
        raise ForbiddenError("Superuser privileges required")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
SuperUser = Annotated[User, Depends(get_superuser)]
