"""hardsep_lib.training (see hardsep_lib/__init__.py)."""
