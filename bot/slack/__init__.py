"""The Slack edge: the Bolt app, its listeners and the messenger (`app`), Block Kit
(`blocks`), the shapes of Slack's requests (`shapes`), the Web API client that keeps
Slack's per-method limits (`client`) and the preflight checks (`preflight`)."""
