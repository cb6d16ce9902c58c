"""Where outputs live and how they are written: atomic files, deterministic HDF5, the model folder, pictures."""
