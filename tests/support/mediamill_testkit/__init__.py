"""Test stages and an upload client shared by the worker tests (in-process and subprocess).

The stages are registered for subprocess workers the way any plugin is: an installed
distribution's entry points (see :func:`install_test_stages`).
"""
