"""Open Inference Protocol v2 datatypes and their numpy and ONNX equivalents."""

from __future__ import annotations

from typing import Final

import numpy as np

# OIP v2 datatype -> numpy dtype. BYTES tensors are carried as numpy object arrays of str.
NUMPY_BY_DATATYPE: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

DATATYPE_BY_NUMPY: Final[dict[np.dtype[np.generic], str]] = {
    dtype: name for name, dtype in NUMPY_BY_DATATYPE.items()
}

# ONNX Runtime's type strings ("tensor(float)") -> OIP v2 datatype.
DATATYPE_BY_ONNX: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# Which JSON-decoded numpy kinds may be cast to a datatype without losing meaning:
# ints are accepted for floats, but floats are never silently truncated to ints.
ACCEPTED_KINDS: Final[dict[str, str]] = {
    "BOOL": "b",
    "UINT8": "iu",
    "UINT16": "iu",
    "UINT32": "iu",
    "UINT64": "iu",
    "INT8": "iu",
    "INT16": "iu",
    "INT32": "iu",
    "INT64": "iu",
    "FP16": "iuf",
    "FP32": "iuf",
    "FP64": "iuf",
    "BYTES": "U",
}

# Byte size of one element in the binary tensor extension (BYTES is length-prefixed).
ITEMSIZE: Final[dict[str, int]] = {
    name: dtype.itemsize for name, dtype in NUMPY_BY_DATATYPE.items() if name != "BYTES"
}
