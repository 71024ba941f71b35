"""OpenAPI description of the inference endpoints, which run on the raw ASGI fast path and
so are invisible to FastAPI's route introspection."""

from __future__ import annotations

from typing import Any

from serinus_serving.datatypes import NUMPY_BY_DATATYPE

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": sorted(NUMPY_BY_DATATYPE)},
        "parameters": {"type": "object"},
        "data": {"type": "array", "description": "Row-major flat, or nested to match shape."},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR},
    },
}
_V1_REQUEST = {
    "type": "object",
    "required": ["instances"],
    "properties": {"instances": {"type": "array", "minItems": 1}},
}
_V1_RESPONSE = {"type": "object", "properties": {"predictions": {"type": "array"}}}


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str, request: dict[str, Any], response: dict[str, Any], params: list[str]
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": ["inference"],
            "parameters": [_param(p) for p in params],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request}},
            },
            "responses": {
                "200": _json(response, "Predictions"),
                "400": _json(_ERROR, "Malformed request, unknown input, wrong datatype or shape"),
                "404": _json(_ERROR, "Unknown model or version"),
                "413": _json(_ERROR, "Body over the size limit"),
                "503": _json(_ERROR, "Model not ready"),
            },
        }
    }


def infer_paths() -> dict[str, Any]:
    v2 = "Open Inference Protocol v2 inference"
    return {
        "/v2/models/{model_name}/infer": _operation(
            v2, _INFER_REQUEST, _INFER_RESPONSE, ["model_name"]
        ),
        "/v2/models/{model_name}/versions/{model_version}/infer": _operation(
            v2, _INFER_REQUEST, _INFER_RESPONSE, ["model_name", "model_version"]
        ),
        "/v1/models/{model_name}:predict": _operation(
            "KServe v1 prediction", _V1_REQUEST, _V1_RESPONSE, ["model_name"]
        ),
    }
