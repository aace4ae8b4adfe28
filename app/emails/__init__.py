"""Emails: the messages Keel sends and the sender that delivers them (SMTP, or the log)."""
