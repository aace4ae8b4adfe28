"""Registration, login, token refresh and logout."""

from typing import Annotated

from fastapi import APIRouter, Form, status

from app.api.v1.schemas.auth import (
    Accepted,
    EmailVerification,
    LoginForm,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    TokenPair,
)
from app.api.v1.schemas.common import error_responses
from app.api.v1.schemas.users import UserPublic, UserRegister
from app.dependencies import (
    CurrentSessionId,
    CurrentUser,
    EmailQuotaDep,
    SessionDep,
    SettingsDep,
)
from app.services import account_service, auth_service

router = APIRouter(prefix="/auth", tags=["auth"])
UNAUTHORIZED = error_responses({401: "Invalid credentials or token"})
BAD_TOKEN = error_responses({400: "Unknown, expired or used token"})
EMAIL_LIMITED = error_responses({429: "Too many emails to this address or from this client"})
# The same answer whether or not the account exists: nothing here tells which addresses do.
RESET_ACCEPTED = Accepted(detail="If an active account has this address, an email is on its way")


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses={**error_responses({409: "Email already registered"}), **EMAIL_LIMITED},
)
async def register(
    body: UserRegister, session: SessionDep, settings: SettingsDep, quota: EmailQuotaDep
) -> object:
    """Create an account; a verification email goes to its address."""
    return await account_service.register(
        session,
        settings,
        quota,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
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


@router.post("/verify-email", response_model=UserPublic, responses=BAD_TOKEN)
async def verify_email(body: EmailVerification, session: SessionDep) -> object:
    """Confirm an address with the token from the verification email."""
    return await account_service.verify_email(session, token=body.token)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={**error_responses({401: "Not authenticated"}), **EMAIL_LIMITED},
)
async def resend_verification(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, quota: EmailQuotaDep
) -> Accepted:
    """Send a fresh verification email (none when the address is verified already)."""
    await account_service.resend_verification(session, settings, quota, user)
    return Accepted(detail="A verification email is on its way unless the address is verified")


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=EMAIL_LIMITED,
)
async def request_password_reset(
    body: PasswordResetRequest, session: SessionDep, settings: SettingsDep, quota: EmailQuotaDep
) -> Accepted:
    """Email a reset link to the account with this address, if there is one."""
    await account_service.request_password_reset(session, settings, quota, email=body.email)
    return RESET_ACCEPTED


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=BAD_TOKEN)
async def confirm_password_reset(body: PasswordResetConfirm, session: SessionDep) -> None:
    """Set a new password with the emailed token; every session of the account ends."""
    await account_service.reset_password(session, token=body.token, new_password=body.new_password)
