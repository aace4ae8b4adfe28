"""What the app's routes say about a request: its route template, its path's methods, its body."""

import re
from functools import lru_cache
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import Scope

FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RouteTemplates:
    """The full template of the route that answered (`/api/v1/items/{item_id}`), or None.

    For logs and metric labels, never the concrete path. `scope["route"]` is the route as its
    router declared it, without the prefixes it was included under: the app's route contexts
    have the full path. Looked up once per route (kept beside its `id()`: routes are unhashable).
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, str | None]] = {}

    def __call__(self, scope: Scope) -> str | None:
        route = scope.get("route")
        if route is None:
            return None
        cached = self._by_id.get(id(route))
        if cached is None or cached[0] is not route:
            cached = self._by_id[id(route)] = (route, _full_template(scope.get("app"), route))
        return cached[1]


def _full_template(app: Any, route: Any) -> str | None:
    for context in iter_route_contexts(getattr(app, "routes", ())):
        if context.original_route is route and context.path_format:
            return str(context.path_format)
    return getattr(route, "path_format", None) or getattr(route, "path", None)


@lru_cache(maxsize=256)
def _path_regex(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method of every route with this path, for `Allow` (Starlette's has the first's)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        if route.path and route.methods and _path_regex(route.path).match(path):
            methods |= route.methods
    return sorted(methods)


def unsupported_media_type(route: Any, headers: Headers) -> str | None:
    """The media type a body was sent with when the route cannot read it (a 415), else None."""
    content_type = headers.get("content-type", "")
    if not isinstance(route, APIRoute) or not route.body_field or not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    expects_form = any(
        getattr(param.field_info, "media_type", "").startswith(FORM_MEDIA_TYPES)
        for param in route.dependant.body_params
    )
    if expects_form:
        return None if media in FORM_MEDIA_TYPES else media
    is_json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    return None if is_json else media
