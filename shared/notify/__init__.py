"""Notifications: messages, the outbox that sends them, the one bounded diff."""
