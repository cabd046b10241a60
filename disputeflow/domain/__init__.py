"""Pure domain rules: no I/O, no clock, no randomness. Safe to import inside workflows."""
