"""Data in: annotation readers, images, augmentation, datasets and synthetic scenes."""
