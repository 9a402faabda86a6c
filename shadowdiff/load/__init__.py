"""Capacity: replay a capture at its production rate and rising multiples (`shadowdiff load`)."""
