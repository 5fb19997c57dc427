"""One module per capability. A handler takes a Context and an Interaction and returns effects."""
