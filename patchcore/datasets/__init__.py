"""Data sets: where they come from, how they are fetched and unpacked, their layout, image decoding."""
