"""What every owned resource's routes share, as FastAPI dependencies a route declares:
`PageParams` (limit, offset or cursor), `IfNoneMatchDep` (a read's 304), `IfMatchDep` (a
change's precondition and new ETag), `CreateOnceDep` (Idempotency-Key), and `owned_responses`
for the OpenAPI document. See app/api/v1/endpoints/items.py for a resource using them."""

from app.api.v1.resources.conditional import IfMatchDep, IfNoneMatchDep
from app.api.v1.resources.create_once import CreateOnceDep
from app.api.v1.resources.pages import PageParams
from app.api.v1.resources.responses import UNAUTHENTICATED, owned_responses

__all__ = [
    "UNAUTHENTICATED",
    "CreateOnceDep",
    "IfMatchDep",
    "IfNoneMatchDep",
    "PageParams",
    "owned_responses",
]
