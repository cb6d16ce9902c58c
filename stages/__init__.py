"""PatchCore anomaly detection as DVC pipeline stages."""
