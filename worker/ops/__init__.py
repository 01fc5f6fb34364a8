"""What an operator runs against a deployed stack: read and move dead letters, inspect an item.

Sync boto3 throughout: a command does one thing after another and exits, so the worker's
async clients would buy nothing but an event loop to start.
"""
