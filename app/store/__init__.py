"""SQL only: one module per aggregate, the ORM models and the engine. Callers own transactions."""
