"""What people look at: the batch report page, plots, overlays, site maps."""
