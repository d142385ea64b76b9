"""The call and what is decided for it across concerns: its record, its policy input, its routes, its
reservations and its next attempt.
"""
