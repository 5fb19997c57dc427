"""The console edge: a chat in the terminal, as any member, with buttons and forms (`chat`)."""
