"""PatchCore anomaly detection: the library behind the `patchcore` command and the DVC stage commands (stages/)."""
