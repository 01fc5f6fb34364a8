"""Selective reprocessing: ``mediamill reprocess`` finds the items a stage owes and sends one
request each; the worker runs that stage (and what it lacks) on each and merges the results."""
