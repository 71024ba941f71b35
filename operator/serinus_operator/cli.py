"""The ``serinus`` command (also installed as ``kubectl-serinus``).

Each subcommand imports its machinery lazily so that ``serinus serve`` starts without
loading the operator's dependencies.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from serinus_operator import __version__
from serinus_operator.local import cli as local_cli
from serinus_operator.platforms.pinning import REFRESH_SECONDS
from serinus_operator.scheduling import RESYNC_SECONDS
from serinus_serving.drift import cli as drift_cli
from serinus_serving.settings import add_serve_flags, settings_from_args


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve one ONNX model over the Open Inference Protocol v2 and KServe v1",
        description="Serve one ONNX model with ONNX Runtime (CPU). The server is ready "
        "(GET /v2/health/ready) once the model is fetched, verified, loaded and warmed up. "
        "Every flag can also be set by its environment variable (SERINUS_SERVE_ and the "
        "flag's name: --max-batch-size is SERINUS_SERVE_MAX_BATCH_SIZE); a flag wins.",
    )
    add_serve_flags(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from serinus_serving.server import run

    run(settings_from_args(args))
    return 0


#: Where the kubelet reads a container's termination message (``kubectl describe pod``).
TERMINATION_LOG = Path("/dev/termination-log")


def _add_fetch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fetch",
        help="fetch and verify a model into a directory (a serving pod's init container)",
        description="Fetch the model at --model into --model-dir, verified as `serinus serve` "
        "would, and record its digest there, so `serinus serve --prefetched` with the same "
        "--model and --model-dir loads that copy. Exits 1 with the reason (also the "
        "container's termination message on Kubernetes) when it cannot.",
    )
    p.add_argument("--model", required=True, help="the model's URI, as for serinus serve")
    p.add_argument("--sha256", help="expected sha256 of the model (its file or its files)")
    p.add_argument("--model-dir", type=Path, required=True, help="where to keep it")
    p.add_argument(
        "--max-model-bytes", type=int, default=None, help="largest model (default: 4 GiB)"
    )
    _add_log_level(p)
    p.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    import logging

    from serinus_serving.errors import ModelLoadError
    from serinus_serving.loading import DEFAULT_MAX_BYTES, fetch_model
    from serinus_serving.sources.base import quiet_client_logs

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")
    quiet_client_logs()
    limit = DEFAULT_MAX_BYTES if args.max_model_bytes is None else args.max_model_bytes
    try:
        fetched = fetch_model(
            args.model, sha256=args.sha256, dest_dir=args.model_dir, max_bytes=limit
        )
    except ModelLoadError as exc:
        message = f"cannot fetch the model: {exc}"
        print(message, file=sys.stderr)
        if TERMINATION_LOG.is_file():  # only where the kubelet made one
            TERMINATION_LOG.write_text(message)
        return 1
    print(f"fetched the model: sha256 {fetched.sha256}, {fetched.size} bytes")
    return 0


def _add_router(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "router",
        help="route a model's traffic between revisions: weights, pinning, shadow",
        description="A reverse proxy in front of a model's revisions. The routing table "
        "(JSON, from a file or a ConfigMap) is watched and applied within a second; "
        "see docs/traffic.md.",
    )
    p.add_argument(
        "--routes",
        required=True,
        help="the routing table: a JSON file path, or configmap:NAMESPACE/NAME (its "
        "routes.json key, watched through the Kubernetes API)",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: 8000)")
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        help="on SIGTERM, report unready but keep accepting this long, so that load "
        "balancers stop sending first (default: 0)",
    )
    p.add_argument(
        "--prediction-log",
        default="memory",
        metavar="memory|off|redis://HOST:PORT/DB",
        help="where answers wait for their labels (POST /v2/models/M/feedback on any "
        "replica): memory (this process; one replica), redis://… (shared by every replica; "
        "rediss:// for TLS), or off (feedback is forwarded to the backends); default: memory",
    )
    p.add_argument(
        "--request-id-header",
        default="x-request-id",
        help="the header holding a request's id; else the OIP body's id; else the router "
        "makes one and returns it in this header (default: x-request-id)",
    )
    p.add_argument(
        "--prediction-ttl",
        type=_positive_float,
        default=3600.0,
        metavar="SECONDS",
        help="how long an answer waits for its label (default: 3600)",
    )
    p.add_argument(
        "--prediction-log-max-bytes",
        type=_positive_int,
        default=64 << 20,
        metavar="BYTES",
        help="the in-process log's byte budget, the oldest answers dropped past it; Redis is "
        "bounded by its own maxmemory (default: 67108864, 64 MiB)",
    )
    p.add_argument(
        "--prediction-log-prefix",
        default="serinus:",
        help="prefix of the Redis keys, distinct per namespace when one Redis serves "
        "several (default: serinus:)",
    )
    _add_log_level(p)
    p.set_defaults(func=_router)


def _router(args: argparse.Namespace) -> int:
    from serinus_serving.router.prediction_settings import PredictionLogSettings
    from serinus_serving.router.server import run

    run(
        args.routes,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        drain_seconds=args.drain_seconds,
        predictions=PredictionLogSettings(
            store=args.prediction_log,
            request_id_header=args.request_id_header,
            ttl_seconds=args.prediction_ttl,
            max_bytes=args.prediction_log_max_bytes,
            prefix=args.prediction_log_prefix,
        ),
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0 (got {text})")
    return value


def _add_pacing(p: argparse.ArgumentParser) -> None:
    """How often and how many reconcile passes run."""
    p.add_argument(
        "--resync-seconds",
        type=float,
        default=RESYNC_SECONDS,
        help="reconcile each ModelDeployment at least this often even without news, each "
        "at its own moment of the period; read from the watch caches, so it costs no "
        f"request (default: {RESYNC_SECONDS:.0f})",
    )
    p.add_argument(
        "--model-refresh-seconds",
        type=float,
        default=REFRESH_SECONDS,
        help="ask a model store what an alias (models:/NAME@ALIAS) or a tag (oci://…:TAG) "
        "names at most this often per ModelDeployment; a change starts a rollout "
        f"(default: {REFRESH_SECONDS:.0f})",
    )
    p.add_argument(
        "--max-concurrent-passes",
        type=_positive_int,
        default=16,
        metavar="N",
        help="reconcile passes running at once; the others queue, changed and due ones "
        "before idle resyncs (default: 16)",
    )
    p.add_argument(
        "--kube-api-qps",
        type=_positive_float,
        default=50.0,
        help="the operator's API requests per second after a burst, as client-go's "
        "(default: 50); a 429 is retried after its Retry-After",
    )
    p.add_argument(
        "--kube-api-burst",
        type=_positive_int,
        default=100,
        metavar="N",
        help="API requests the operator may send at once before --kube-api-qps applies "
        "(default: 100)",
    )


def _add_operator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the Kubernetes operator (kopf) that rolls ModelDeployments out",
        description="Watch ModelDeployments and roll their models out; see docs/install.md. "
        "Credentials: in-cluster service account, else kubeconfig.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch this namespace (repeatable; globs allowed)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = p.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate several replicas through this kopf peering object (HA)",
    )
    peering.add_argument(
        "--standalone", action="store_true", help="no peering: a single replica (default)"
    )
    p.add_argument(
        "--peering-lifetime",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --peering: how long a silent replica keeps the lead (default: 60)",
    )
    p.add_argument(
        "--priority",
        type=int,
        help="with --peering: the highest live replica acts, the others stand by "
        "(default: random per replica)",
    )
    p.add_argument("--metrics-host", default="0.0.0.0", help="metrics/health listen address")
    p.add_argument("--metrics-port", type=int, default=8000, help="/metrics and /healthz port")
    p.add_argument("--prometheus-url", help="the Prometheus that analysis queries")
    p.add_argument("--prometheus-token-file", type=Path, help="bearer token file (re-read)")
    p.add_argument("--prometheus-ca-file", type=Path, help="CA bundle for Prometheus")
    p.add_argument("--serving-image", help="default image of serving pods")
    p.add_argument("--router-image", help="image of router pods")
    p.add_argument(
        "--router-prediction-log",
        metavar="redis://HOST:PORT/DB",
        help="the prediction log every router replica shares, so feedback sent to any of "
        "them is joined (docs/drift.md); default: none (feedback forwarded to the serving pods)",
    )
    p.add_argument("--kubeconfig", help="default: in-cluster, else $KUBECONFIG")
    p.add_argument("--context", help="kubeconfig context")
    _add_pacing(p)
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    _add_log_level(p)
    p.set_defaults(func=_operator)


def _operator(args: argparse.Namespace) -> int:
    from serinus_operator.resources.config import DEFAULT_IMAGE
    from serinus_operator.runner import OperatorOptions, configure_logging
    from serinus_operator.runner import main as run

    configure_logging(args.log_level, args.log_format)
    return run(
        OperatorOptions(
            namespaces=tuple(args.namespaces),
            all_namespaces=args.all_namespaces,
            standalone=args.peering is None,
            peering=args.peering,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
            prometheus_url=args.prometheus_url,
            prometheus_token_file=args.prometheus_token_file,
            prometheus_ca_file=args.prometheus_ca_file,
            serving_image=args.serving_image or DEFAULT_IMAGE,
            router_image=args.router_image or args.serving_image or DEFAULT_IMAGE,
            kubeconfig=args.kubeconfig,
            context=args.context,
            resync_seconds=args.resync_seconds,
            max_concurrent_passes=args.max_concurrent_passes,
            kube_api_qps=args.kube_api_qps,
            kube_api_burst=args.kube_api_burst,
            peering_lifetime=args.peering_lifetime,
            priority=args.priority,
            pin=_pin,
            model_refresh_seconds=args.model_refresh_seconds,
            router_prediction_log=args.router_prediction_log,
        )
    )


def _pin(uri: str, env: Mapping[str, str]) -> str:
    """The data plane's pinning (``serinus_serving.sources.pinning``), for the operator."""
    from serinus_operator.platforms.pinning import PinError
    from serinus_serving.errors import ModelLoadError
    from serinus_serving.sources.pinning import pin

    try:
        return pin(uri, env=env)
    except ModelLoadError as exc:
        raise PinError(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise PinError(f"the store's answer was not understood ({type(exc).__name__})") from exc


def build_parser(prog: str = "serinus") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serinus: progressive delivery for ML models."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_fetch(sub)
    _add_router(sub)
    _add_operator(sub)
    drift_cli.add_parser(sub)
    local_cli.add_parsers(sub)
    # `serinus local` pins aliases and tags with the data plane's code, handed down here.
    parser.set_defaults(pin=_pin)
    from serinus_operator import kubectl

    kubectl.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    prog = Path(sys.argv[0]).name if argv is None else "serinus"
    args = build_parser("kubectl serinus" if prog == "kubectl-serinus" else "serinus").parse_args(
        argv
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
