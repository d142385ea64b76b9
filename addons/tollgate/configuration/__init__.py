"""The configuration file, assembled and loaded: each concern's settings, the console's, the records',
the fleet's.
"""
