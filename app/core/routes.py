"""The route template of a request (`/api/v1/items/{item_id}`), for logs and metric labels."""

from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.types import Scope


def _full_template(app: Any, route: Any) -> str | None:
    """The route's path with the prefixes it was included under.

    Since FastAPI 0.16x, `scope["route"]` is the route as declared in its router, so its own
    `path` lacks those prefixes; the app's route contexts carry the full one.
    """
    for context in iter_route_contexts(getattr(app, "routes", ())):
        if context.original_route is route and context.path_format:
            return str(context.path_format)
    return getattr(route, "path_format", None) or getattr(route, "path", None)


class RouteTemplates:
    """The full template of the route that answered, or None when no route matched.

    One per app (the edge middleware keeps it), each route looked up once. Routes are not
    hashable: the cache is keyed by `id()` and keeps the route itself, so an id reused by a later
    route is never mistaken for the one that held it.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, str | None]] = {}

    def __call__(self, scope: Scope) -> str | None:
        route = scope.get("route")
        if route is None:
            return None
        cached = self._by_id.get(id(route))
        if cached is not None and cached[0] is route:
            return cached[1]
        template = _full_template(scope.get("app"), route)
        self._by_id[id(route)] = (route, template)
        return template
