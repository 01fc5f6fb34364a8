"""The built-in `probe` stage: kind and format from the bytes, facts from the header."""
