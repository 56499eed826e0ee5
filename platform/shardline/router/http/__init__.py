"""The OpenAI-compatible HTTP door: aiohttp server, OpenAI wire format, chat templates."""
