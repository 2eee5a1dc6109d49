"""Property-based API tests: Schemathesis against the app's own OpenAPI schema.

Every operation gets generated requests (valid and invalid) sent with an admin token; no
answer may be a 5xx, and every answer must match the status codes and bodies the schema
documents. Examples are bounded so the whole run stays around a minute per backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from e2e_helpers import ADMIN_PASSWORD, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from agentguild.server import create_app

MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def api_schema(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The app's OpenAPI schema, bound to the app over ASGI (its own event loop)."""
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    app = create_app(make_settings(database_url, data_dir), on_first_start=lambda _r: None)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def admin_headers(api_schema: Any) -> dict[str, str]:
    login = api_schema["/auth/token"]["POST"].Case(
        body={"username": "admin", "password": ADMIN_PASSWORD}, media_type="application/json"
    )
    response = login.call()
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _exercise(operation: Any, headers: dict[str, str]) -> None:
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )

    run()


def test_api_honours_its_schema(api_schema: Any, admin_headers: dict[str, str]) -> None:
    # One test walking every operation (pytest 9 cannot run Schemathesis' lazy
    # `from_fixture` parametrisation); every failing operation is reported.
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 10
    for operation in operations:
        try:
            _exercise(operation, admin_headers)
        except Exception as exc:  # collect, so one run reports every broken operation
            failures[operation.label] = str(exc)[:2000]

    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
