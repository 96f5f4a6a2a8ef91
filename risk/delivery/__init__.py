"""Getting messages out: the durable outbox and its transports."""
