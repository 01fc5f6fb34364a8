"""What the API and the worker share: the item schema and codec, keys, settings, event payloads.

It imports nothing heavy (no media libraries, no async AWS clients), so the API Lambda can be
packaged with this and boto3 alone.
"""
