"""The route template of a request (`/api/v1/items/{item_id}`), for logs and metric labels."""

from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.types import Scope

_TEMPLATES = "keel.route_templates"


def route_template(scope: Scope) -> str | None:
    """The full template of the route that answered, or None when no route matched.

    Since FastAPI 0.16x, `scope["route"]` is the route as declared in its router, so its own
    `path` lacks the prefixes it was included under; the full template comes from the app's
    route contexts, indexed once per app.
    """
    route: Any = scope.get("route")
    if route is None:
        return None
    app: Any = scope.get("app")
    state = getattr(app, "state", None)
    templates: dict[int, str] | None = getattr(state, _TEMPLATES, None)
    if templates is None and state is not None:
        templates = {
            id(context.original_route): context.path_format
            for context in iter_route_contexts(app.routes)
            if context.path_format
        }
        setattr(state, _TEMPLATES, templates)
    template = templates.get(id(route)) if templates else None
    return template or getattr(route, "path_format", None) or getattr(route, "path", None)


class RouteTemplates:
    """`route_template` with a cache, for the edge middleware of one app.

    Routes are not hashable: the cache is keyed by `id()` and keeps the route itself, so an id
    reused by a later route is never mistaken for the one that held it.
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
        template = route_template(scope)
        self._by_id[id(route)] = (route, template)
        return template
