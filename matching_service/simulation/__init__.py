"""Seeded day-by-day market simulation driving the real bundling and placement rules."""
