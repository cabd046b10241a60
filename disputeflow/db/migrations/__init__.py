"""Schema migrations (Alembic). `disputeflow.db.engine.create_schema` applies them at start-up."""
