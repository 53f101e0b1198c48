"""potential."""
