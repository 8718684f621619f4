"""Planetary archive products (PDS3, PDS4, Chang'e) and the camera geometry in their labels."""
