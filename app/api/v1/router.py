from fastapi import APIRouter

from app.api.v1.endpoints import auth, items, users

api_router = APIRouter()
# Routes are matched in order: the busiest resource first.
api_router.include_router(items.router)
api_router.include_router(users.router)
api_router.include_router(auth.router)
