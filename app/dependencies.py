"""Annotated dependency aliases used by the endpoints."""

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.exceptions import ForbiddenError, UnauthorizedError
from app.core.security import request_access_claims
from app.models import User
from app.repositories.outbox_repository import RECORDED_JOBS
from app.services import auth_service


async def get_settings_dep(request: Request) -> Settings:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction, committed before the response is sent.

    Used with `scope="function"`: FastAPI then finishes this generator when the endpoint returns,
    before the response goes out, so a failed commit becomes an error response, never a 2xx.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        recorded = session.info.get(RECORDED_JOBS)
        if recorded:  # jobs recorded in the committed transaction: hand them over now
            request.app.state.jobs.after_commit(recorded)


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for endpoints that only read: no transaction, and any write raises."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


# The path under the default prefix; the OpenAPI document gets this app's own (app/api/docs.py).
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def _authenticate(request: Request, token: str | None, session: AsyncSession) -> User:
    """The caller, from a bearer access token of a live session; 401 otherwise."""
    if not token:
        raise UnauthorizedError("Not authenticated")
    settings: Settings = request.app.state.settings
    verified = request_access_claims(request.scope, settings)  # the rate limiter's, if it ran
    auth = await auth_service.authenticate(session, settings, token, verified=verified)
    structlog.contextvars.bind_contextvars(user_id=str(auth.user.id))  # for the access line
    request.state.session_id = auth.session_id
    return auth.user


async def get_current_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    """The caller, looked up through a session of its own, closed before the endpoint runs.

    So an endpoint that writes (SessionDep) never holds two pooled connections at once: that
    could deadlock a full pool.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with sessionmaker() as session:
        return await _authenticate(request, token, session)


async def get_reading_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)], session: ReadSessionDep
) -> User:
    """The caller, looked up through the request's own read session (ReadSessionDep).

    For endpoints that only read: the lookup and the endpoint's reads share one connection,
    checked out once. An endpoint that writes uses CurrentUser (tests/api/test_connections.py).
    """
    return await _authenticate(request, token, session)


CurrentUser = Annotated[User, Depends(get_current_user)]
ReadingUser = Annotated[User, Depends(get_reading_user)]


async def get_session_id(request: Request, _: CurrentUser) -> uuid.UUID:
    """The id of the login session the caller's access token belongs to."""
    session_id: uuid.UUID = request.state.session_id
    return session_id


CurrentSessionId = Annotated[uuid.UUID, Depends(get_session_id)]


async def get_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise ForbiddenError("Superuser privileges required")
    return user


SuperUser = Annotated[User, Depends(get_superuser)]
