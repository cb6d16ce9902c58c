"""Where the data-parallel work of extract, evaluate and predict runs: here (local) or on Ray."""
