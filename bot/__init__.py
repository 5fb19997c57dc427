"""Chat plumbing: the neutral core (`bot.core`), the outbox sender (`bot.outbox`) and one
package per edge: Slack, Teams, the console, the HTTP server with the lead webhook, and the
command line."""
