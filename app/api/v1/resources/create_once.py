"""`Idempotency-Key` on creates: a retried POST gets the first answer instead of a second row.

A create declares `CreateOnceDep` and answers through it: `await once(writer, body, create)`.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response, status
from pydantic import BaseModel

from app.api.v1.resources.conditional import etag
from app.api.v1.schemas.common import error_responses
from app.dependencies import Writer
from app.models.base import OwnedResource
from app.services import idempotency

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern="^[ -~]+$",  # printable ASCII
        description="Send a retry with the same key and body: it is answered, not run again",
    ),
]
IDEMPOTENCY_ERRORS: dict[int | str, dict[str, Any]] = error_responses(
    {
        409: "A request with this Idempotency-Key is still being processed",
        422: "Validation failed, or the Idempotency-Key was used with another request",
    }
)
REPLAYED = "Idempotent-Replayed"
_KEPT_HEADERS = ("Location", "ETag")


@dataclass(frozen=True)
class CreateOnce:
    request: Request
    key: str | None

    async def __call__(
        self, writer: Writer, body: BaseModel, create: Callable[[], Awaitable[OwnedResource]]
    ) -> Response:
        """Run `create` unless this user already sent this key; then answer as the first time.

        The answer is 201 with the route's `response_model` view of the new row, its
        `Location` (the collection's path + `/{id}`) and `ETag`.
        """
        if self.key is None:
            return await self._created(create)
        request, user_id = self.request, writer.user.id
        fingerprint = idempotency.fingerprint(
            request.method, request.url.path, body.model_dump_json()
        )
        stored = await idempotency.stored_answer(
            writer.session, user_id=user_id, key=self.key, request_fingerprint=fingerprint
        )
        if stored is not None:
            return Response(
                stored.body,
                status_code=stored.status_code,
                headers={**stored.headers, REPLAYED: "true"},
                media_type="application/json",
            )
        response = await self._created(create)
        kept = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
        answer = idempotency.Answer(response.status_code, bytes(response.body), kept)
        await idempotency.store_answer(
            writer.session,
            user_id=user_id,
            key=self.key,
            request_fingerprint=fingerprint,
            answer=answer,
        )
        return response

    async def _created(self, create: Callable[[], Awaitable[OwnedResource]]) -> Response:
        """The 201 answer, serialized here so that a replay can send the very same bytes."""
        row = await create()
        public: type[BaseModel] = self.request.scope["route"].response_model
        return Response(
            public.model_validate(row).model_dump_json(),
            status_code=status.HTTP_201_CREATED,
            headers={"Location": f"{self.request.url.path}/{row.id}", "ETag": etag(row.version)},
            media_type="application/json",
        )


async def create_once(request: Request, idempotency_key: IdempotencyKey = None) -> CreateOnce:
    return CreateOnce(request, idempotency_key)


CreateOnceDep = Annotated[CreateOnce, Depends(create_once)]
