"""Draft sources: the registry (each source described once), the Drafter protocol and one
module per source."""
