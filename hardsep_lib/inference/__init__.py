"""hardsep_lib.inference (see hardsep_lib/__init__.py)."""
