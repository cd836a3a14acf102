"""hardsep_lib.mining (see hardsep_lib/__init__.py)."""
