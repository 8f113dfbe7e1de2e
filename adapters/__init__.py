"""Bridges from a node to the local systems that hold records.

This package never imports `gateway`: an adapter sees record types, field names and rows,
nothing of tokens, policies or audit.
"""
