"""Optimisers, schedules, distribution strategies and the resumable training loop."""
