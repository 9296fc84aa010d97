"""Draft sources: the registry (each source described once), the Drafter protocol and one
module per source. Importing the package registers the built-in sources."""

from app.core.drafting import sources as _sources  # noqa: F401  (registers on import)
