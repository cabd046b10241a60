"""Persistence: reference data, the read model for listings and reports, the outbox and the audit trail."""
