# Serinus's two images, one build: a shared builder and runtime base, and one target per image.
# Build from the repository root:
#   docker build --target operator -t serinus-operator .   # `serinus operator`
#   docker build --target serving -t serinus-serving .     # `serinus serve` and `serinus router`
# (`make images` builds both.) The base is pinned to an exact release; pin it by digest too with
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: the wheel and a virtual environment with its dependencies ---------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/serinus_operator operator/serinus_operator
COPY serving/serinus_serving serving/serinus_serving
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/serinus \
 && /opt/serinus/bin/pip install --no-cache-dir "$(echo /wheels/serinus-*.whl)[redis]"

# --- runtime: the interpreter, the environment, nothing to build with ------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="serinus" \
      org.opencontainers.image.description="Serinus: progressive delivery for ML models on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/serinus/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/serinus /opt/serinus
# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["serinus"]

# --- serving: the model server and the router; the operator sets the command per Deployment --
FROM runtime AS serving
LABEL org.opencontainers.image.title="serinus-serving" \
      org.opencontainers.image.description="Serinus model server and router (ONNX Runtime, Open Inference Protocol v2)"
EXPOSE 8080
CMD ["serve", "--help"]

# --- operator: `serinus operator`, serving its metrics and /healthz on one port --------------
# The last stage, so a plain `docker build .` gives the operator.
FROM runtime AS operator
LABEL org.opencontainers.image.title="serinus-operator" \
      org.opencontainers.image.description="Serinus operator: progressive delivery for ML models on Kubernetes"
EXPOSE 8000
CMD ["operator"]
