"""cxrstats package."""
