"""The global rate limiter: every worker on every machine held to each cloud's limit."""
