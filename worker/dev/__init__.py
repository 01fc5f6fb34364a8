"""Dev tooling for laptops and tests: the moto stack, the local API stand-in, the demo, samples.

Nothing on the production path imports this package (an import contract says so); it needs the
``dev-stack`` extra (moto, rich).
"""
