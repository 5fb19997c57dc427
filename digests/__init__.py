"""The weekly alignment digest, SLA nudges and the scheduler wiring (coming with the SLA and
digest work; the foundation has no scheduled jobs yet)."""
