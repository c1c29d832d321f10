"""communication_service: emails (queue, status), phone calls (schedule, outcome) and templates."""
