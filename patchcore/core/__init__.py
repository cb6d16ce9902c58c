"""The PatchCore algorithm: pure array and tensor code, no file I/O and no settings objects."""
