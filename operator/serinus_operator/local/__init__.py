"""``serinus local``: the operator's loop on one machine, over the local platform
(:mod:`serinus_operator.platforms.local`). See docs/local.md."""
