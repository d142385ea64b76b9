"""The stages of a call's answer: the stream read as it passes, upstream failures, retries and
fallbacks.
"""
