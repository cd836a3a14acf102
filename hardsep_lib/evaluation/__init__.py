"""hardsep_lib.evaluation (see hardsep_lib/__init__.py)."""
