"""Run ``serinus router`` under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from serinus_serving.router.app import RouterApp
from serinus_serving.router.kube_source import (
    ConfigMapSource,
    KubeConfig,
    KubeConfigError,
    parse_target,
)
from serinus_serving.router.sources import FileSource


def build(routes: str) -> RouterApp:
    app = RouterApp()
    source: FileSource | ConfigMapSource
    if routes.startswith("configmap:"):
        try:
            namespace, name = parse_target(routes.removeprefix("configmap:"))
            config = KubeConfig.from_env()
        except KubeConfigError as exc:
            raise SystemExit(str(exc)) from exc
        source = ConfigMapSource(namespace, name, app.apply, rejected=app.rejected, config=config)
    else:
        source = FileSource(Path(routes), app.apply, rejected=app.rejected)
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
