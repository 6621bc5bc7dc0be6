"""cxrcls package."""
