"""therapist_service: therapists, preferences, phone hours, status, cooling, directory imports."""
