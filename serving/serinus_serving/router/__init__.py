"""``serinus router``: weighted split, revision pinning, stickiness and shadow comparison in
front of a model's revisions."""
