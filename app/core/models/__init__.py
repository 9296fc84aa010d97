"""The pinned real models (catalog), their fetcher, and the user's model library."""

from app.core.models.catalog import (
    CATALOG,
    DEFAULT_MODEL,
    CatalogEntry,
    Part,
    UnknownModelError,
    get_entry,
)
from app.core.models.fetcher import FetchCancelled, FetchProgress, ProgressCallback, fetch
from app.core.models.library import (
    Library,
    PinnedStatus,
    installed_path,
    pinned_status,
    resolve_model,
)

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogEntry",
    "FetchCancelled",
    "FetchProgress",
    "Library",
    "Part",
    "PinnedStatus",
    "ProgressCallback",
    "UnknownModelError",
    "fetch",
    "get_entry",
    "installed_path",
    "pinned_status",
    "resolve_model",
]
