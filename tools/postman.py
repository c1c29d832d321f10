"""The Postman collection and environment of the platform, generated from the five OpenAPI
documents (`make postman`; `python -m tools.postman [--check]`).

Every operation of every service becomes a request (some more than one), in an order that
works against a fresh `make run` stack: ids created by one request flow to the next through
collection variables. Each request checks the status the OpenAPI document gives for it.
Where an event has to travel first (a patient reaching matching, a location being resolved)
the request is repeated every half second, up to a minute, until the service has it.

The documents are read from the apps themselves (serving `/openapi.json` needs neither
database nor broker), so the collection follows the code; `--check` (run by the unit tests)
fails when the committed files are not what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.devstack import ROOT
from shared.settings import SERVICE_PORTS

OUT = ROOT / "postman"
COLLECTION = OUT / "placement.postman_collection.json"
ENVIRONMENT = OUT / "dev.postman_environment.json"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
METHODS = ("get", "post", "put", "patch", "delete")
UNUSED_DB = "postgresql://unused@127.0.0.1:1/unused"
PLACEHOLDER_SECRET = "openapi-only-0123456789-abcdefghijklmnopqrstuvwxyz"

# events on their way: matching does not know the patient or therapist yet (404, 422) or
# has no location for them yet (409 not contactable: no_location)
NOT_YET = "[404, 409, 422].includes(pm.response.code)"


@dataclass(frozen=True)
class Step:
    """One request of the collection."""

    service: str
    method: str
    path: str
    name: str
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    path_values: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # default: the operation's documented success status
    save: dict[str, str] = field(default_factory=dict)  # variable -> JS expression on `body`
    retry_while: str | None = None  # JS condition: send again (at most RETRIES times)
    description: str = ""


RETRIES = 120
TODAY_SCRIPT = "pm.collectionVariables.set('today', new Date().toISOString().slice(0, 10));"
PLZ = "04109"
UNIQUE = "{{$timestamp}}{{$randomInt}}"


def _therapist(first_name: str) -> dict[str, Any]:
    return {
        "salutation": "Frau",
        "title": "Dr.",
        "first_name": first_name,
        "last_name": "Beispiel",
        "street": "Augustusplatz 9",
        "postal_code": PLZ,
        "city": "Leipzig",
        "phone": "0341 1234567",
        "email": f"praxis.{first_name.lower()}.{UNIQUE}@example.org",
        "phone_hours": {day: ["08:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "therapy_methods": ["behavioural"],
        "languages": ["Deutsch"],
    }


def _patient(first_name: str) -> dict[str, Any]:
    return {
        "gender": "female",
        "first_name": first_name,
        "last_name": "Mustermann",
        "postal_code": PLZ,
        "birth_date": "1985-02-03",
        "email": f"{first_name.lower()}.{UNIQUE}@example.org",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood", "sleep_problems"],
        "availability": {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        "contract_signed": True,
        "payment_received": True,
    }


DIRECTORY_FILE = {
    "metadata": {"postal_code": PLZ, "city": "Leipzig", "source": "Postman example"},
    "therapists": [
        {
            "id": "pm{{$timestamp}}",
            "basic_info": {
                "salutation": "Herr",
                "title": "",
                "first_name": "Jonas",
                "last_name": "Verzeichnis",
            },
            "location": {
                "street": "Nikolaistraße",
                "house_number": "10",
                "postal_code": PLZ,
                "city": "Leipzig",
            },
            "contact": {"phone": "0341 7654321", "email": "", "fax": ""},
            "languages": ["Deutsch"],
            "therapy_methods": ["Verhaltenstherapie - Erwachsene"],
            "telephone_hours": {"Mo": ["8:00-9:00"], "Do": ["12:00-13:00"]},
        }
    ],
}

STEPS: tuple[Step, ...] = (
    # geocoding: the PLZ data make run loads
    Step("geocoding", "GET", "/api/plz/{plz}", "A postal code", path_values={"plz": PLZ}),
    Step(
        "geocoding",
        "GET",
        "/api/geocode",
        "Coordinates of an address",
        query={"address": f"Augustusplatz 9, {PLZ} Leipzig"},
    ),
    Step(
        "geocoding",
        "GET",
        "/api/distance",
        "Distance between two postal codes",
        query={"from": PLZ, "to": "04103", "mode": "car"},
    ),
    Step(
        "geocoding",
        "POST",
        "/api/distances",
        "Distances of many pairs",
        body={"pairs": [{"from": PLZ, "to": "04103"}, {"from": PLZ, "to": "51.3397,12.3731"}]},
    ),
    # therapists
    Step(
        "therapist",
        "POST",
        "/api/therapists",
        "Add a therapist",
        body=_therapist("Maria"),
        save={"therapist_id": "body.id", "practice_key": "body.practice_key"},
    ),
    Step(
        "therapist",
        "POST",
        "/api/therapists",
        "Add a second therapist (for a placement)",
        body=_therapist("Sabine"),
        save={"second_therapist_id": "body.id"},
    ),
    Step(
        "therapist",
        "POST",
        "/api/therapists",
        "Add a third therapist (to block and exclude)",
        body=_therapist("Petra"),
        save={"third_therapist_id": "body.id"},
    ),
    Step(
        "therapist",
        "GET",
        "/api/therapists",
        "List therapists",
        query={"postal_code_prefix": "04", "page": "1", "per_page": "20"},
    ),
    Step("therapist", "GET", "/api/therapists/{therapist_id}", "A therapist"),
    Step(
        "therapist",
        "PATCH",
        "/api/therapists/{therapist_id}",
        "Change a therapist",
        body={"phone_hours": {"mon": ["08:00-12:00"], "wed": ["14:00-18:00"]}},
    ),
    Step("therapist", "GET", "/api/practices/{practice_key}", "A practice"),
    Step(
        "therapist",
        "POST",
        "/api/therapists/{therapist_id}/block",
        "Block a therapist",
        path_values={"therapist_id": "{{third_therapist_id}}"},
        body={"reason": "asked not to be contacted"},
    ),
    Step(
        "therapist",
        "POST",
        "/api/therapists/{therapist_id}/unblock",
        "Unblock a therapist",
        path_values={"therapist_id": "{{third_therapist_id}}"},
    ),
    Step(
        "therapist",
        "POST",
        "/api/therapist-imports",
        "Import a directory file (admin)",
        body=DIRECTORY_FILE,
        save={"import_id": "body.id"},
    ),
    Step("therapist", "GET", "/api/therapist-imports", "Directory imports (admin)"),
    Step("therapist", "GET", "/api/therapist-imports/{import_id}", "A directory import (admin)"),
    # patients
    Step(
        "patient",
        "POST",
        "/api/patients",
        "Register a patient",
        body=_patient("Erika"),
        save={"patient_id": "body.id"},
    ),
    Step(
        "patient",
        "POST",
        "/api/patients",
        "Register a second patient",
        body=_patient("Jana"),
        save={"second_patient_id": "body.id"},
    ),
    Step("patient", "GET", "/api/patients", "List patients", query={"page": "1", "per_page": "20"}),
    Step("patient", "GET", "/api/patients/{patient_id}", "A patient"),
    Step(
        "patient",
        "PATCH",
        "/api/patients/{patient_id}",
        "Change a patient",
        body={"availability": {day: ["08:00-18:00"] for day in ("mon", "tue", "wed")}},
    ),
    Step("patient", "GET", "/api/patients/{patient_id}/qualification", "Qualification"),
    Step("patient", "GET", "/api/symptoms", "The symptom catalogue"),
    Step(
        "patient",
        "POST",
        "/api/patients/{patient_id}/exclusions",
        "Exclude a therapist for good (patient)",
        body={"therapist_id": "{{third_therapist_id}}", "reason": "knows the patient privately"},
    ),
    Step(
        "patient",
        "DELETE",
        "/api/patients/{patient_id}/exclusions/{therapist_id}",
        "Lift the patient's exclusion",
        path_values={"therapist_id": "{{third_therapist_id}}"},
    ),
    # searches
    Step(
        "matching",
        "POST",
        "/api/patient-searches",
        "Start a search",
        body={"patient_id": "{{patient_id}}"},
        save={"search_id": "body.id"},
        retry_while=NOT_YET,
        description="Repeated until matching knows the patient and geocoding located them.",
    ),
    Step(
        "matching",
        "POST",
        "/api/patient-searches",
        "Start the second patient's search",
        body={"patient_id": "{{second_patient_id}}"},
        save={"second_search_id": "body.id"},
        retry_while=NOT_YET,
    ),
    Step(
        "matching",
        "GET",
        "/api/patient-searches",
        "List searches",
        query={"status": "active", "postal_code_prefix": "04", "page": "1", "per_page": "20"},
    ),
    Step("matching", "GET", "/api/patient-searches/{search_id}", "A search"),
    Step(
        "matching",
        "PATCH",
        "/api/patient-searches/{search_id}",
        "Pause a search",
        body={"status": "paused", "reason": "on holiday"},
    ),
    Step(
        "matching",
        "PATCH",
        "/api/patient-searches/{search_id}",
        "Resume a search",
        body={"status": "active", "reason": "back"},
    ),
    Step(
        "matching",
        "POST",
        "/api/patient-searches/{search_id}/contact-requests",
        "Grant more contacts",
        body={"count": 5},
    ),
    Step(
        "matching",
        "POST",
        "/api/patient-searches/{search_id}/exclusions",
        "Exclude a therapist from a search",
        body={"therapist_id": "{{third_therapist_id}}", "reason": "patient's wish"},
        retry_while="pm.response.code === 422",
    ),
    Step(
        "matching",
        "GET",
        "/api/contactability/{therapist_id}",
        "Contactability of a therapist",
        retry_while="pm.response.code === 404",
    ),
    # an inquiry and its answer
    Step(
        "matching",
        "POST",
        "/api/inquiries",
        "Write an inquiry by hand",
        body={"therapist_id": "{{therapist_id}}", "search_ids": ["{{search_id}}"]},
        save={"inquiry_id": "body.id"},
        retry_while=NOT_YET,
    ),
    Step(
        "matching",
        "GET",
        "/api/inquiries",
        "List inquiries",
        query={"therapist_id": "{{therapist_id}}", "page": "1", "per_page": "20"},
    ),
    Step("matching", "GET", "/api/inquiries/{inquiry_id}", "An inquiry"),
    Step(
        "matching",
        "PUT",
        "/api/inquiries/{inquiry_id}/response",
        "Record an answer (heard on the phone)",
        body={
            "response_type": "full_acceptance",
            "channel": "phone",
            "patients": [{"search_id": "{{search_id}}", "outcome": "accepted"}],
            "notes": "first session next Tuesday",
        },
    ),
    Step(
        "matching",
        "POST",
        "/api/patient-searches/{search_id}/trial-outcome",
        "Trial sessions went well",
        body={"outcome": "success"},
    ),
    Step(
        "matching",
        "GET",
        "/api/patient-searches/{search_id}/contact-log",
        "Contact log of a search",
        query={"format": "json"},
    ),
    Step(
        "matching",
        "POST",
        "/api/contactability/{therapist_id}/override",
        "End a practice's cooling (admin)",
        body={"reason": "the therapist called: a place is free"},
    ),
    Step(
        "matching",
        "POST",
        "/api/patient-searches/{search_id}/placements",
        "Place a patient by hand",
        path_values={"search_id": "{{second_search_id}}"},
        body={"therapist_id": "{{second_therapist_id}}"},
        retry_while="pm.response.code === 422",
    ),
    # bundle runs and figures
    Step(
        "matching",
        "POST",
        "/api/bundle-runs",
        "Bundle run (dry run)",
        body={"postal_code_prefix": PLZ, "dry_run": True},
        save={"run_id": "body.id"},
    ),
    Step("matching", "GET", "/api/bundle-runs", "Bundle runs"),
    Step("matching", "GET", "/api/bundle-runs/{run_id}", "A bundle run"),
    Step(
        "matching", "GET", "/api/analytics/summary", "Analytics", query={"postal_code_prefix": "04"}
    ),
    # communication
    Step(
        "communication",
        "GET",
        "/api/emails",
        "Emails of a patient",
        query={"patient_id": "{{patient_id}}"},
        save={"email_id": "body.items[0].id"},
        retry_while="pm.response.code === 200 && pm.response.json().items.length === 0",
        description="Repeated until the search_started email is queued.",
    ),
    Step("communication", "GET", "/api/emails/{email_id}", "An email"),
    Step(
        "communication",
        "GET",
        "/api/phone-calls",
        "Call list of a day",
        query={"date": "{{today}}"},
    ),
    Step(
        "communication",
        "PATCH",
        "/api/phone-calls/{call_id}",
        "Record how a call went",
        path_values={"call_id": "{{call_id}}"},
        body={"outcome": "reached", "notes": "will answer by email"},
        status=404,
        description="With a call id from the call list. The collection's run has no call "
        "booked (calls come with follow-ups and therapists without email), so it checks "
        "the 404 of an unknown call; set call_id to a scheduled call to record one.",
    ),
    # admin
    *(
        Step(service, "GET", "/api/admin/outbox", f"Outbox backlog of {service} (admin)")
        for service in ("patient", "therapist", "matching", "communication", "geocoding")
    ),
    *(
        Step(
            service,
            "GET",
            "/api/audit-events",
            f"Audit log of {service} (admin)",
            query={"page": "1", "per_page": "20"},
        )
        for service in ("patient", "therapist", "matching", "communication", "geocoding")
    ),
    *(
        Step(
            service,
            "GET",
            "/api/patients/{patient_id}/data",
            f"What {service} holds about a patient (admin, service token)",
        )
        for service in ("matching", "communication", "geocoding")
    ),
    Step(
        "patient",
        "GET",
        "/api/patients/{patient_id}/export",
        "Everything held about a patient, from every service (admin)",
    ),
    Step(
        "patient",
        "DELETE",
        "/api/patients/{patient_id}",
        "Erase a patient in every service (admin)",
        path_values={"patient_id": "{{second_patient_id}}"},
        description="The second patient: anonymised here, patient.erased reaches the others.",
    ),
    Step(
        "geocoding",
        "POST",
        "/api/admin/plz-imports",
        "Import the PLZ data again (admin)",
        body={},
        description="Without `source`: the service's PLZ_DATA (what make run loaded).",
    ),
)

FOLDERS = {
    "geocoding": "Geocoding",
    "therapist": "Therapists",
    "patient": "Patients",
    "matching": "Matching",
    "communication": "Communication",
    "admin": "Admin (outbox backlogs, PLZ data)",
}
VARIABLES = (
    "therapist_id",
    "second_therapist_id",
    "third_therapist_id",
    "practice_key",
    "import_id",
    "patient_id",
    "second_patient_id",
    "search_id",
    "second_search_id",
    "inquiry_id",
    "run_id",
    "email_id",
)


def openapi_documents() -> dict[str, dict[str, Any]]:
    """The OpenAPI document each service serves, keyed by short name."""
    from communication_service.app import create_app as communication
    from communication_service.settings import CommunicationSettings
    from geocoding_service.app import create_app as geocoding
    from geocoding_service.settings import GeocodingSettings
    from matching_service.app import create_app as matching
    from matching_service.settings import MatchingSettings
    from patient_service.app import create_app as patient
    from patient_service.settings import PatientSettings
    from therapist_service.app import create_app as therapist
    from therapist_service.settings import TherapistSettings

    apps: dict[str, tuple[Any, Any]] = {
        "patient": (patient, PatientSettings),
        "therapist": (therapist, TherapistSettings),
        "matching": (matching, MatchingSettings),
        "communication": (communication, CommunicationSettings),
        "geocoding": (geocoding, GeocodingSettings),
    }
    documents = {}
    for name, (create_app, settings_cls) in apps.items():
        secrets = {
            key: PLACEHOLDER_SECRET
            for key in ("service_token", "answer_link_secret")
            if key in settings_cls.model_fields
        }
        settings = settings_cls(database_url=UNUSED_DB, log_json=False, **secrets)
        response = create_app(settings).test_client().get("/openapi.json")
        assert response.status_code == 200, name
        documents[name] = response.get_json()
    return documents


def operations(documents: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    """Every operation: (service, METHOD, path) -> its OpenAPI operation object."""
    found = {}
    for service, document in documents.items():
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if method in METHODS:
                    found[(service, method.upper(), path)] = operation
    return found


def _test_script(step: Step, status: int) -> list[str]:
    lines = []
    if step.retry_while:
        lines += [
            "const tries = Number(pm.collectionVariables.get('tries') || 0);",
            f"if (({step.retry_while}) && tries < {RETRIES}) {{",
            "    pm.collectionVariables.set('tries', tries + 1);",
            "    setTimeout(() => {}, 500);",
            "    pm.execution.setNextRequest(pm.info.requestName);",
            "} else {",
            "    pm.collectionVariables.unset('tries');",
        ]
    indent = "    " if step.retry_while else ""
    lines += [
        f"{indent}pm.test('status {status}', () => pm.response.to.have.status({status}));",
        f"{indent}if (pm.response.code !== {status}) {{",
        f"{indent}    console.log(pm.info.requestName, pm.response.code, pm.response.text());",
        f"{indent}}}",
    ]
    for variable, expression in sorted(step.save.items()):
        lines += [
            f"{indent}if (pm.response.code === {status}) {{",
            f"{indent}    const body = pm.response.json();",
            f"{indent}    pm.collectionVariables.set('{variable}', {expression});",
            f"{indent}}}",
        ]
    if step.retry_while:
        lines.append("}")
    return lines


def _request(step: Step, operation: Any) -> dict[str, Any]:
    documented = sorted(int(code) for code in operation.get("responses", {}) if code.isdigit())
    status = step.status or next(code for code in documented if 200 <= code < 300)
    if status not in documented:
        raise ValueError(f"{step.name}: {status} is not documented for {step.path}")
    raw_path = step.path
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = step.path_values.get(parameter["name"], "{{" + parameter["name"] + "}}")
            raw_path = raw_path.replace("{" + parameter["name"] + "}", value)
    query = [{"key": key, "value": value} for key, value in step.query.items()]
    known = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    unknown = set(step.query) - known
    if unknown:
        raise ValueError(f"{step.name}: query parameters {sorted(unknown)} not documented")
    raw = "{{" + step.service + "_url}}" + raw_path
    if query:
        raw += "?" + "&".join(f"{q['key']}={q['value']}" for q in query)
    request: dict[str, Any] = {
        "method": step.method,
        "header": [],
        "url": {
            "raw": raw,
            "host": ["{{" + step.service + "_url}}"],
            "path": [part for part in raw_path.split("/") if part],
        },
        "description": " ".join(
            part for part in (operation.get("summary", ""), step.description) if part
        ),
    }
    if query:
        request["url"]["query"] = query
    if step.body is not None:
        request["header"].append({"key": "Content-Type", "value": "application/json"})
        text = json.dumps(step.body, indent=2, ensure_ascii=False)
        # ids are numbers: "{{search_id}}" in the JSON becomes {{search_id}}
        for variable in VARIABLES:
            text = text.replace(f'"{{{{{variable}}}}}"', f"{{{{{variable}}}}}")
        request["body"] = {"mode": "raw", "raw": text, "options": {"raw": {"language": "json"}}}
    return {
        "name": step.name,
        "event": [
            {
                "listen": "test",
                "script": {"type": "text/javascript", "exec": _test_script(step, status)},
            }
        ],
        "request": request,
    }


def build(documents: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collection and the environment."""
    ops = operations(documents)
    covered = {(s.service, s.method, s.path) for s in STEPS}
    missing = sorted(set(ops) - covered)
    if missing:
        raise ValueError(f"no request for {missing}: add a Step in tools/postman.py")
    unknown = sorted(covered - set(ops))
    if unknown:
        raise ValueError(f"steps for operations no service documents: {unknown}")
    names = [s.name for s in STEPS]
    if len(set(names)) != len(names):
        raise ValueError("request names must be unique (retries go by name)")
    # one folder per stretch of the journey, in order (a service may come back later)
    items: list[dict[str, Any]] = []
    for step in STEPS:
        item = _request(step, ops[(step.service, step.method, step.path)])
        group = "admin" if step.path.startswith("/api/admin/") else step.service
        if items and items[-1]["_service"] == group:
            items[-1]["item"].append(item)
        else:
            items.append({"_service": group, "name": "", "item": [item]})
    for number, folder in enumerate(items, 1):
        folder["name"] = f"{number:02d} {FOLDERS[folder.pop('_service')]}"
    collection = {
        "info": {
            "_postman_id": "6f1d3c1e-1d2a-4c7e-9a57-7a1c0c6b2f01",
            "name": "Psychotherapy placement platform",
            "description": (__doc__ or "").strip().split("\n\n")[1].replace("\n", " ")
            + " Environment: postman/dev.postman_environment.json (make run's ports); set "
            "`token` to the admin token (var/admin-token): a staff token serves all but the "
            "requests marked (admin). Generated by `make postman` from the OpenAPI documents.",
            "schema": SCHEMA,
        },
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}],
        },
        "event": [
            {
                "listen": "prerequest",
                "script": {
                    "type": "text/javascript",
                    "exec": [TODAY_SCRIPT],
                },
            }
        ],
        "variable": [{"key": name, "value": ""} for name in (*VARIABLES, "today")]
        + [{"key": "call_id", "value": "2147483647"}],
        "item": items,
    }
    environment = {
        "id": "0b9b8d52-3c39-4a55-8f0e-3d7d3b3f6a10",
        "name": "Placement platform (make run)",
        "values": [
            {
                "key": f"{service.removesuffix('_service')}_url",
                "value": f"http://127.0.0.1:{port}",
                "enabled": True,
            }
            for service, port in SERVICE_PORTS.items()
        ]
        + [{"key": "token", "value": "", "type": "secret", "enabled": True}],
        "_postman_variable_scope": "environment",
    }
    return collection, environment


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write postman/*.json, or with --check compare them with what would be written."""
    parser = argparse.ArgumentParser(prog="python -m tools.postman")
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args(argv)
    collection, environment = build(openapi_documents())
    wanted = {COLLECTION: _dump(collection), ENVIRONMENT: _dump(environment)}
    if args.check:
        stale = [p.name for p, text in wanted.items() if not p.is_file() or p.read_text() != text]
        if stale:
            print(f"stale: {', '.join(stale)}; run make postman and commit them", file=sys.stderr)
            return 1
        print("postman collection and environment are current")
        return 0
    OUT.mkdir(exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
