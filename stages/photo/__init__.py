"""The built-in `thumbnail` stage and its photo helpers: decode, render, EXIF, placeholder."""
