"""The outbox sender: claims what is owed, draws each card as it is then and sends it through
the delivery contract at the platforms' pace, with its admin notices and the click updates
a request sends at once."""
