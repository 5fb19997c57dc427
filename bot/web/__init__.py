"""The HTTP edge: the aiohttp server that `liaison serve` runs (`server`: Slack's events,
Teams' activities, health, metrics) and the signed lead webhook (`webhook`)."""
