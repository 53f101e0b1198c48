"""Settings files: MLIP-2's ``mlip.ini`` (and, later, TOML settings of new commands)."""
