"""`GET /metrics`: Prometheus text format; root level, no auth, never rate limited."""

from fastapi import APIRouter, Response

from app.core import metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def scrape() -> Response:
    """Every metric of every worker, merged; a sync route, so the file reads leave the loop."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
