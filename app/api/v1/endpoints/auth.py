"""Registration, login, token refresh and logout."""

from typing import Annotated

from fastapi import APIRouter, Form, status

from app.api.v1.schemas.auth import LoginForm, RefreshRequest, TokenPair
from app.api.v1.schemas.common import error_responses
from app.api.v1.schemas.users import UserPublic, UserRegister
from app.dependencies import CurrentSessionId, SessionDep, SettingsDep
from app.services import auth_service, user_service

router = APIRouter(prefix="/auth", tags=["auth"])
UNAUTHORIZED = error_responses({401: "Invalid credentials or token"})


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=error_responses({409: "Email already registered"}),
)
async def register(body: UserRegister, session: SessionDep) -> object:
    """Create an account."""
    return await user_service.create(
        session, email=body.email, password=body.password, full_name=body.full_name
    )


@router.post("/token", response_model=TokenPair, responses=UNAUTHORIZED)
async def login(
    form: Annotated[LoginForm, Form()],
    session: SessionDep,
    settings: SettingsDep,
) -> TokenPair:
    """OAuth2 password flow: `username` is the email. Starts a session."""
    tokens = await auth_service.login(
        session, settings, email=form.username, password=form.password
    )
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post("/refresh", response_model=TokenPair, responses=UNAUTHORIZED)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """Trade a refresh token for a new pair; each refresh token works once."""
    tokens = await auth_service.refresh(session, settings, refresh_token=body.refresh_token)
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=UNAUTHORIZED)
async def logout(session_id: CurrentSessionId, session: SessionDep) -> None:
    """End this session: its access and refresh tokens stop working at once."""
    await auth_service.logout(session, session_id=session_id)
