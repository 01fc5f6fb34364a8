"""mediamill worker: consumes upload events and runs the stage pipeline.

Importing this package is cheap; the heavy media libraries load only with the stages that use
them. What the API shares with the worker lives in ``mediamill_core``, not here.
"""

__version__ = "0.1.0"
