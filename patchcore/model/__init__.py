"""A trained model held in memory, in torch or through its exported file, deciding one image at a time."""
