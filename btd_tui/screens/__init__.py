"""Screens and modal dialogs of the audit app."""
