"""The 116117 directory: reading its files, matching and merging its records, sample data.

Pure where it can be: no web, database or broker here (import-linter checks it). The use
case that writes what these modules decide is `therapist_service.service.import_directory`.
"""
