"""Workflow types kept only so that cases started under them run to their end and still replay.

No new case starts here. A type leaves this folder when its last case has closed and the
namespace's retention has removed its histories (see docs/versioning.md).
"""
