"""Which matrix this scenario run uses: scenarios/matrix.yaml, or the name
(scenarios/<name>.yaml) or path given in CALLWALL_MATRIX (`make scenarios
MATRIX=quick`)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.paths import resolve_spec
from harness.spec.matrix import load_matrix

SCENARIOS = Path(__file__).resolve().parent
MATRIX_PATH = resolve_spec(os.environ.get("CALLWALL_MATRIX") or "matrix", SCENARIOS)
MATRIX, MATRIX_LOC = load_matrix(MATRIX_PATH)
