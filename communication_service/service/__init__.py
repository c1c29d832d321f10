"""Use cases of communication_service: emails queued from events and sent by `send-emails`
(emails.py, sending.py) and the phone work of staff (calls.py)."""
