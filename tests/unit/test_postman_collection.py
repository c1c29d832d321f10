"""The committed Postman collection is what `make postman` writes from the OpenAPI documents."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tools import postman


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return postman.openapi_documents()


def test_committed_collection_and_environment_are_current(
    documents: dict[str, dict[str, Any]],
) -> None:
    collection, environment = postman.build(documents)
    assert json.loads(postman.COLLECTION.read_text()) == collection, "run make postman"
    assert json.loads(postman.ENVIRONMENT.read_text()) == environment, "run make postman"


def test_every_operation_of_the_five_services_is_a_request(
    documents: dict[str, dict[str, Any]],
) -> None:
    collection, _ = postman.build(documents)
    requests = [item for folder in collection["item"] for item in folder["item"]]
    operations = postman.operations(documents)
    assert len(operations) >= 48
    assert {service for service, _, _ in operations} == set(postman.FOLDERS) - {"admin"}
    assert len(requests) == len(postman.STEPS) >= len(operations)
    for item in requests:
        host = item["request"]["url"]["host"][0]
        assert host in {"{{" + s + "_url}}" for s in postman.FOLDERS if s != "admin"}
        script = "\n".join(item["event"][0]["script"]["exec"])
        assert "pm.response.to.have.status(" in script


def test_an_operation_without_a_request_stops_the_generator(
    documents: dict[str, dict[str, Any]],
) -> None:
    dropped = postman.STEPS[0]
    steps = tuple(s for s in postman.STEPS if s != dropped)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(postman, "STEPS", steps)
        with pytest.raises(ValueError, match="no request for"):
            postman.build(documents)


def test_a_status_the_document_does_not_give_stops_the_generator(
    documents: dict[str, dict[str, Any]],
) -> None:
    wrong = dataclasses.replace(postman.STEPS[0], status=418)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(postman, "STEPS", (wrong, *postman.STEPS[1:]))
        with pytest.raises(ValueError, match="418 is not documented"):
            postman.build(documents)


def test_ids_travel_as_numbers_in_the_example_bodies(documents: dict[str, dict[str, Any]]) -> None:
    collection, _ = postman.build(documents)
    bodies = {
        item["name"]: item["request"]["body"]["raw"]
        for folder in collection["item"]
        for item in folder["item"]
        if "body" in item["request"]
    }
    assert '"patient_id": {{patient_id}}' in bodies["Start a search"]
    assert '"search_ids": [\n    {{search_id}}\n  ]' in bodies["Write an inquiry by hand"]
