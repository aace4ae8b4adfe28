"""The v1 endpoint routers, in the order requests are matched: the busiest resource first.

`create_app` includes each one under `API_V1_PREFIX` itself rather than through one parent
router: FastAPI matches an included router as a nested node, so every level of nesting is one
more pass over the routes on every request.
"""

from app.api.v1.endpoints import auth, items, users

routers = (items.router, users.router, auth.router)
