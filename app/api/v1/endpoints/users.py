"""The caller's own account (`/me`) and, for superusers, every account."""

import uuid

from fastapi import APIRouter, status

from app.api.v1.resources import PageParams
from app.api.v1.schemas.common import Page, created_links, error_responses
from app.api.v1.schemas.users import (
    PasswordChange,
    UserCreate,
    UserPublic,
    UserUpdate,
    UserUpdateMe,
)
from app.dependencies import (
    CurrentUser,
    EmailQuotaDep,
    ReadConnectionDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
    SuperUser,
)
from app.services import account_service, user_service

router = APIRouter(
    prefix="/users",
    tags=["users"],
    responses=error_responses({401: "Not authenticated"}),
)
ADMIN_ONLY = error_responses({403: "Superuser privileges required"})
NOT_FOUND = error_responses({404: "User not found"})
CONFLICT = error_responses({409: "Email already registered"})
WRONG_PASSWORD = error_responses({403: "Current password is incorrect"})
EMAIL_LIMITED = error_responses({429: "Too many emails to this address or from this client"})


@router.get("/me", response_model=UserPublic)
async def read_me(user: CurrentUser) -> object:
    return user


@router.patch(
    "/me", response_model=UserPublic, responses={**CONFLICT, **WRONG_PASSWORD, **EMAIL_LIMITED}
)
async def update_me(
    body: UserUpdateMe,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    quota: EmailQuotaDep,
) -> object:
    """A new email needs `current_password`; it is unverified until the link sent to it is
    opened, the previous address gets a notice, and every emailed link of the account ends."""
    changes = body.model_dump(exclude_unset=True, exclude={"current_password"})
    return await account_service.update_profile(
        session,
        settings,
        user.id,
        changes,
        quota=quota,
        current_password=body.current_password,
    )


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_me(user: CurrentUser, session: SessionDep) -> None:
    """Delete the account, its items and every session."""
    await user_service.delete(session, user.id)


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT, responses=WRONG_PASSWORD)
async def change_password(body: PasswordChange, user: CurrentUser, session: SessionDep) -> None:
    """Set a new password; every token issued before stops working."""
    await user_service.change_password(
        session, user.id, current_password=body.current_password, new_password=body.new_password
    )


@router.get("", response_model=Page[UserPublic], responses=ADMIN_ONLY)
async def list_users(
    _: SuperUser, connection: ReadConnectionDep, page: PageParams
) -> dict[str, object]:
    users = await user_service.page(
        connection, limit=page.limit, offset=page.offset, after=page.after
    )
    return page.answer(users)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses={
        **ADMIN_ONLY,
        **CONFLICT,
        **created_links("user_id", "read_user", "update_user", "delete_user"),
    },
)
async def create_user(body: UserCreate, _: SuperUser, session: SessionDep) -> object:
    return await user_service.create(session, **body.model_dump())


@router.get("/{user_id}", response_model=UserPublic, responses={**ADMIN_ONLY, **NOT_FOUND})
async def read_user(user_id: uuid.UUID, _: SuperUser, session: ReadSessionDep) -> object:
    return await user_service.get(session, user_id)


@router.patch(
    "/{user_id}", response_model=UserPublic, responses={**ADMIN_ONLY, **NOT_FOUND, **CONFLICT}
)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, _: SuperUser, session: SessionDep, settings: SettingsDep
) -> object:
    changes = body.model_dump(exclude_unset=True)
    return await account_service.update_profile(session, settings, user_id, changes)


@router.delete(
    "/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**ADMIN_ONLY, **NOT_FOUND}
)
async def delete_user(user_id: uuid.UUID, _: SuperUser, session: SessionDep) -> None:
    await user_service.delete(session, user_id)
