"""What the stage commands compute: features, memory bank, test scores, metrics, pictures and the summary."""
