"""Annotated dependency aliases used by the endpoints."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.database import read_sessions
from app.core.exceptions import ForbiddenError, UnauthorizedError
from app.core.rate_limit import EmailQuota
from app.core.security import TokenClaims, request_access_claims
from app.models import UserView
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


async def get_read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """For endpoints that only read: one pooled connection, in autocommit (no transaction).

    Pages and the caller's lookup run on it as Core statements; `ReadSessionDep` puts an ORM
    session on the same connection when an endpoint reads entities.
    """
    engine: AsyncEngine = request.app.state.read_engine
    async with engine.connect() as connection:
        yield connection


ReadConnectionDep = Annotated[AsyncConnection, Depends(get_read_connection, scope="function")]


async def get_read_session(connection: ReadConnectionDep) -> AsyncIterator[AsyncSession]:
    """An ORM session on the request's read connection: any write through it raises."""
    async with read_sessions(bind=connection) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


# The path under the default prefix; the OpenAPI document gets this app's own (app/api/docs.py).
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_access_claims(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> TokenClaims:
    """The claims of the request's valid bearer access token; 401 without one.

    Checked before any database work, so a request without a valid token never takes a pooled
    connection. The rate limiter has usually verified the token already: the answer is reused.
    """
    if not token:
        raise UnauthorizedError("Not authenticated")
    claims = request_access_claims(request.scope, request.app.state.settings)
    if claims is None:
        raise UnauthorizedError()
    return claims


AccessClaims = Annotated[TokenClaims, Depends(get_access_claims)]


async def _authenticate(claims: TokenClaims, connection: AsyncConnection) -> UserView:
    """The active user whose live login session the claims name; 401 otherwise."""
    user = await auth_service.authenticate(connection, claims)
    structlog.contextvars.bind_contextvars(user_id=str(user.id))  # for the access line
    return user


async def get_current_user(request: Request, claims: AccessClaims) -> UserView:
    """The caller, looked up through a connection of its own, handed back before the endpoint runs.

    So an endpoint that writes (SessionDep) never holds two pooled connections at once: that
    could deadlock a full pool.
    """
    engine: AsyncEngine = request.app.state.read_engine
    async with engine.connect() as connection:
        return await _authenticate(claims, connection)


# The caller as authenticated: who asks and what they may do, never a row to write back.
CurrentUser = Annotated[UserView, Depends(get_current_user)]


class Reader:
    """An endpoint that only reads: the caller, and one pooled connection in autocommit that
    the caller's lookup and the endpoint's queries share; `session` puts an ORM session on that
    same connection, opened on first use. Any write through either raises."""

    def __init__(self, user: UserView, connection: AsyncConnection) -> None:
        self.user = user
        self.connection = connection
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            self._session = read_sessions(bind=self.connection)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def get_reader(request: Request, claims: AccessClaims) -> AsyncIterator[Reader]:
    """The token is checked first (AccessClaims): a request without one takes no connection."""
    engine: AsyncEngine = request.app.state.read_engine
    async with engine.connect() as connection:
        reader = Reader(await _authenticate(claims, connection), connection)
        try:
            yield reader
        finally:
            await reader.close()


@dataclass(frozen=True, slots=True)
class Writer:
    """An endpoint that writes: the caller (looked up on a connection of its own, handed back
    first) and the request's transaction, committed before the answer is sent."""

    user: UserView
    session: AsyncSession


async def get_writer(user: CurrentUser, session: SessionDep) -> Writer:
    return Writer(user, session)


# One dependency per intent: a route that reads declares ReaderDep, one that writes WriterDep.
ReaderDep = Annotated[Reader, Depends(get_reader, scope="function")]
WriterDep = Annotated[Writer, Depends(get_writer)]


async def get_session_id(claims: AccessClaims, _: CurrentUser) -> uuid.UUID:
    """The id of the login session the caller's access token belongs to (checked live)."""
    return claims.session_id


CurrentSessionId = Annotated[uuid.UUID, Depends(get_session_id)]


async def get_superuser(user: CurrentUser) -> UserView:
    if not user.is_superuser:
        raise ForbiddenError("Superuser privileges required")
    return user


SuperUser = Annotated[UserView, Depends(get_superuser)]


async def get_email_quota(request: Request) -> EmailQuota:
    return EmailQuota(request.app.state.rate_limiter, request.scope)


# What a request that sends email may still send, by client IP and by address (section 8).
EmailQuotaDep = Annotated[EmailQuota, Depends(get_email_quota)]
