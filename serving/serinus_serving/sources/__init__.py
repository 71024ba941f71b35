"""Where a model comes from: one module per kind of store, behind ``base.ModelSource``.

``loading.fetch_model`` picks the source by the URI's scheme, lets it fetch into a
directory, and verifies and identifies the result by its digest.
"""
