"""The dispute process, one module per part of it: triage, mediation, escalation, legal aid,
follow-up and deadlines. Each declares its commands whole (see `command.Command`); `changes` holds
the steps they share and `tasks` what each stage asks of people. `disputeflow.domain.actions`
gathers the commands; `disputeflow.domain.lifecycle` is the one door the workflows and the API use.
"""
