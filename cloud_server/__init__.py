"""The team control plane (webhooks, routing to runners, Postgres). Not built yet."""
