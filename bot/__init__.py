"""Liaison's platform-neutral core and its chat adapters."""
