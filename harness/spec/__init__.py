"""The spec: the Case, the parameter table, weights and inputs, the float64 reference,
costs and the row schema. Plain data and NumPy; the bottom of the house
(docs/design.md, "The house")."""
from harness.spec.case import (  # noqa: F401  (harness.spec.Case is public)
    CASE_FIELDS, DTYPES, GELU_APPROXIMATE, LAYERNORM_EPS, MLP_RATIO, MODES, RESULT_COLUMNS,
    STATUSES, WORKLOADS, Case,
)
from harness.spec.schema import ROW_COLUMNS, ROW_SCHEMA  # noqa: F401
