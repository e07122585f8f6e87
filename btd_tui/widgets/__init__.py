"""The audit screen's widgets, one per module."""
