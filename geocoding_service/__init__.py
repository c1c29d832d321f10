"""geocoding_service: PLZ centroids, geocode cache and distance cache."""
