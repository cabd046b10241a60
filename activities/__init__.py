"""Temporal activities: all I/O a case's workflow needs (database, policy file, calendar data)."""
