"""patient_service: patients, their qualification data, preferences and availability."""
