"""The stages of a call's request, in the order they act: what it is, who sends it, where it goes,
whether it may, and with which credential.
"""
