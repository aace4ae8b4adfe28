"""All SQL about items beyond what every owned resource shares (`repositories/owned.py`)."""

from app.models import Item
from app.repositories import owned

# The list is the hottest query. Plain columns, not `Item` entities: a page is only read and
# serialized, and skipping the ORM's identity map and instance construction is the larger part
# of this query's CPU cost.
PAGES = owned.page_statements(Item, *Item.__table__.columns)
