"""Local tooling: never deployed (the gateway emulation, the embedded PostgreSQL, OpenAPI)."""
