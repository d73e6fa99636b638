"""The API against its own OpenAPI document (docs/openapi.yaml, served at /api/schema/):
schemathesis generates requests for every operation, valid and not, and each answer must be
no 5xx, a documented status and content type, and match the documented schema."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.servers import ROOT, DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)
cases_run: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Iterator[None]:
    yield
    if cases_run:
        print(f"\nschemathesis: {len(cases_run)} cases over {len(set(cases_run))} operations")


# The document in the repository; test_the_server_serves_its_document checks it is the one served.
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")


def test_the_server_serves_its_document(daphne: DaphneServer) -> None:
    served = httpx.get(f"{daphne.url}/api/schema/")
    assert served.status_code == 200 and served.headers["content-type"] == "application/yaml"
    assert served.content == (ROOT / "docs" / "openapi.yaml").read_bytes()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: Any, daphne: DaphneServer, committed_api_key: str) -> None:
    response = case.call(base_url=daphne.url, headers={"Authorization": f"Bearer {committed_api_key}"})
    case.validate_response(response, checks=CHECKS)
    cases_run.append(case.operation.label)
