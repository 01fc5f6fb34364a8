"""The built-in `tagging` stage: Rekognition labels and moderation, and the frames it sends."""
