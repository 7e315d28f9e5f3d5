"""Everything that touches a meeting: store, policy, services, CLI (and later the bot and API)."""
