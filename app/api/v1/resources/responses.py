"""The OpenAPI `responses` of an owned resource's routes, named after the resource."""

from dataclasses import dataclass
from typing import Any

from app.api.v1.resources.conditional import (
    CONDITIONAL_CHANGE,
    CONDITIONAL_READ,
    PRECONDITION_FAILED,
)
from app.api.v1.resources.create_once import IDEMPOTENCY_ERRORS
from app.api.v1.schemas.common import created_links, error_responses

Responses = dict[int | str, dict[str, Any]]
UNAUTHENTICATED = error_responses({401: "Not authenticated"})


@dataclass(frozen=True)
class OwnedResponses:
    create: Responses
    read: Responses
    change: Responses
    delete: Responses


def owned_responses(name: str) -> OwnedResponses:
    """For the routes `read_{name}`, `update_{name}`, `delete_{name}` taking `{name}_id`."""
    not_found = error_responses({404: f"{name.capitalize()} not found"})
    operations = (f"read_{name}", f"update_{name}", f"delete_{name}")
    return OwnedResponses(
        create={**created_links(f"{name}_id", *operations), **IDEMPOTENCY_ERRORS},
        read={**CONDITIONAL_READ, **not_found},
        change={**CONDITIONAL_CHANGE, **not_found},
        delete={**not_found, **PRECONDITION_FAILED},
    )
