import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Self

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from app.api.v1.schemas.common import PatchModel, SafeStr, StrictModel

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128

# email-validator refuses addresses under special-use domains (RFC 6761: .test, .localhost, ...):
# no mail reaches them. The pattern says so in the schema, so clients and fuzzers know it.
SPECIAL_USE_DOMAINS = "|".join(email_validator.SPECIAL_USE_DOMAIN_NAMES)
NOT_SPECIAL_USE = rf"^(?!.*[@.](?i:{SPECIAL_USE_DOMAINS})\.?$)"

# Stored lower-cased: the unique constraint on `users.email` is then case-insensitive.
Email = Annotated[
    EmailStr,
    Field(
        max_length=320,
        json_schema_extra={"pattern": NOT_SPECIAL_USE},  # checked by email-validator itself
        description="A deliverable address: special-use domains (.test, .localhost, …) are refused",
    ),
    AfterValidator(str.lower),
]
Password = Annotated[SafeStr, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]
FullName = Annotated[SafeStr, Field(min_length=1, max_length=255)]


class UserRegister(StrictModel):
    email: Email
    password: Password
    full_name: FullName | None = None


class UserCreate(UserRegister):
    """What a superuser may set when creating an account."""

    is_active: bool = True
    is_superuser: bool = False


CurrentPassword = Annotated[SafeStr, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]


class ProfileUpdate(PatchModel):
    not_nullable: ClassVar[tuple[str, ...]] = ("email",)

    email: Email | SkipJsonSchema[None] = None
    full_name: FullName | None = None


class UserUpdateMe(ProfileUpdate):
    """A new `email` needs `current_password`: an access token alone cannot move the account."""

    model_config = ConfigDict(
        json_schema_extra={"dependentRequired": {"email": ["current_password"]}}
    )

    current_password: CurrentPassword | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _password_for_a_new_email(self) -> Self:
        if "email" in self.model_fields_set and self.current_password is None:
            raise PydanticCustomError("missing", "current_password is required to change email")
        return self


class UserUpdate(ProfileUpdate):
    """What a superuser may change on any account."""

    not_nullable = ("email", "password", "is_active", "is_superuser")

    password: Password | SkipJsonSchema[None] = None
    is_active: bool | SkipJsonSchema[None] = None
    is_superuser: bool | SkipJsonSchema[None] = None


class PasswordChange(StrictModel):
    current_password: CurrentPassword
    new_password: Password


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    email_verified: bool
    created_at: datetime
