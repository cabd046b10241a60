"""disputeflow: a public legal-service hotline's disputes, intake to closure, on Temporal."""
