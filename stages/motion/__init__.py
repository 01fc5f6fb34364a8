"""The ``motion`` stage: the video a motion photo carries after its still."""
