"""The HTTP API Lambda: presigned uploads and media lookups behind API Gateway (payload 2.0).

Cold start matters here, so nothing in this package imports pyvips, av or the async AWS stack.
"""
