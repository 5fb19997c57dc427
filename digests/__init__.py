"""What the scheduler produces on its own: the weekly alignment digest (and its `/digest`
preview), the SLA tick's reminders and escalations, the feedback and approval reminders, and
the scheduler that runs them with the outbox sender."""
