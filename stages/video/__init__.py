"""The built-in `transcode` stage and its video helpers: policy, graph, tonemap, poster, remux."""
