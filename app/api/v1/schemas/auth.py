from typing import Annotated, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from app.api.v1.schemas.common import SafeStr, StrictModel
from app.api.v1.schemas.users import Email, Password


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, no secret
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str


class RefreshRequest(StrictModel):
    refresh_token: SafeStr = Field(min_length=1, max_length=4096)


class LoginForm(StrictModel):
    """The OAuth2 password grant (RFC 6749 §4.3) as Swagger UI and OAuth2 clients send it."""

    # A form cannot send null, so optional fields are absent, never null, in the schema.
    grant_type: Literal["password"] | SkipJsonSchema[None] = None
    username: Annotated[SafeStr, Field(min_length=1, max_length=320, description="The email")]
    password: Annotated[SafeStr, Field(min_length=1, max_length=128)]
    scope: Annotated[SafeStr, Field(max_length=1024)] = ""
    client_id: Annotated[SafeStr, Field(max_length=255)] | SkipJsonSchema[None] = None
    client_secret: Annotated[SafeStr, Field(max_length=255)] | SkipJsonSchema[None] = None


# Emailed tokens are 43 URL-safe characters; the bounds only keep junk out.
EmailedToken = Annotated[SafeStr, Field(min_length=1, max_length=512)]


class EmailVerification(StrictModel):
    token: EmailedToken


class PasswordResetRequest(StrictModel):
    email: Email


class PasswordResetConfirm(StrictModel):
    token: EmailedToken
    new_password: Password


class Accepted(BaseModel):
    """A 202: the request is recorded; what it asked for happens in the background."""

    detail: str = Field(examples=["If the account exists, an email is on its way"])
