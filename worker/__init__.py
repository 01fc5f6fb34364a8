"""mediamill worker: consumes upload events and runs the stage pipeline.

Importing this package is cheap (the API Lambda imports its settings and item schema); the
heavy media libraries load only with the stages that use them.
"""

__version__ = "0.1.0"
