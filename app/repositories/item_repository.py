"""All SQL about items beyond what every owned resource shares (`repositories/owned.py`)."""

from app.models import Item
from app.repositories import owned

PAGES = owned.page_statements(Item)
