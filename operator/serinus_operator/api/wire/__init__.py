"""One mapper between the API's frozen dataclasses and their camelCase JSON.

Fields, type hints and (only where the wire differs) ``wire(...)`` metadata say everything:
``encode`` writes a dataclass, ``decode`` reads it back, strictly for a spec someone wrote
and leniently for a status the operator wrote. ``tests/unit/operator/test_schema.py`` walks
the same fields against the CRD's schema, so a field is written once, plus its CRD entry.
"""

from serinus_operator.api.wire.decode import decode, mapping, no_unknown
from serinus_operator.api.wire.encode import encode, ts, value_of
from serinus_operator.api.wire.fields import (
    MISSING,
    Codec,
    Slot,
    Wire,
    camel,
    is_enum,
    is_mapping,
    is_record,
    optional,
    refines,
    sequence_item,
    slots,
    wire,
)

__all__ = [
    "MISSING",
    "Codec",
    "Slot",
    "Wire",
    "camel",
    "decode",
    "encode",
    "is_enum",
    "is_mapping",
    "is_record",
    "mapping",
    "no_unknown",
    "optional",
    "refines",
    "sequence_item",
    "slots",
    "ts",
    "value_of",
    "wire",
]
