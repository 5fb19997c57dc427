"""The platform-neutral core: cards and forms, who acted and where, what a handler asks for
(effects), the router, delivery's contract and the outbox writer, business time and pacing,
the words (templates), settings, logs and metrics. It imports nothing above it (no edge,
handler, digest or outbox sender) and no table classes: its types are plain values."""
