"""cxrseg package."""
