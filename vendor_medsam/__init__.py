"""vendor_medsam package."""
