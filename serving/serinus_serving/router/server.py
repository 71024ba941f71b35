"""Run ``serinus router`` under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from serinus_serving.router.app import RouterApp
from serinus_serving.router.sources import FileSource


def build(routes: str) -> RouterApp:
    app = RouterApp()
    if routes.startswith("configmap:"):
        raise SystemExit(
            "configmap: routing tables are read by the operator's Kubernetes platform, "
            "which is not built yet; use a JSON file path"
        )
    source = FileSource(
        Path(routes),
        app.apply,
        rejected=app.rejected,
    )
    app.on_startup.append(source.start)
    app.on_shutdown.append(source.stop)
    return app


def run(routes: str, *, host: str, port: int, log_level: str = "info") -> None:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = build(routes)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=None,
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()
