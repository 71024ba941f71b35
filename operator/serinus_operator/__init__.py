"""Serinus operator: the ModelDeployment API, the rollout engine and its platforms."""

__version__ = "0.1.0.dev0"
