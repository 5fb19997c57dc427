"""Tables, the engine/session factory, queries and migrations: the only place that writes SQL."""
