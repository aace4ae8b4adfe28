"""The owned resources whose guarantees (idempotent creates, ETags, cursor pages, owner
isolation) the tests check: adding a resource to OWNED_RESOURCES is all it takes to have them
checked for it too (tests/api/test_safe_writes.py, test_cursor_pages.py, test_owned_resources.py).
"""

from dataclasses import dataclass, field
from typing import Any

from app.models import Item
from app.models.base import OwnedResource


@dataclass(frozen=True)
class Owned:
    path: str  # the collection, e.g. "/api/v1/items"
    model: type[OwnedResource]
    text: str  # a text field that creates and changes may set
    required: dict[str, Any] = field(default_factory=dict)  # what else a create needs

    def body(self, value: str) -> dict[str, Any]:
        """A valid create (and change) body whose `text` field is `value`."""
        return {**self.required, self.text: value}


OWNED_RESOURCES = [Owned("/api/v1/items", Item, "title")]
