"""Where the engine's actions land: ``kubernetes`` (the operator) and ``local`` (processes).

Both sit behind :class:`~serinus_operator.platforms.base.Platform`; the loop that drives
them is :mod:`serinus_operator.reconcile`.
"""
