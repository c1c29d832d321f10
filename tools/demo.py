"""`make demo`: a generated data set loaded into the running stack, then a guided tour.

Start the stack first (`make run` in another terminal). The demo talks to it over REST
only, with the admin token (BOOTSTRAP_ADMIN_TOKEN, else DEV_DATA_DIR/admin-token) and the
ports `make run` uses (8001-8005, or from DEV_PORT_BASE on):

1. a synthetic 116117 directory of one region (postal-code prefix, default `04`: Leipzig)
   is generated and imported (`POST /api/therapist-imports`);
2. patients with invented names at postal codes of the region are registered, most of them
   qualified (contract signed, payment received); their searches start once geocoding has
   located them;
3. a bundle run dated in the past (`as_of`, default 9 days ago) writes inquiries, and a
   third of them get an answer (one acceptance each, the others no capacity);
4. a tour of copy-pasteable curl lines through the journey, with the ids just created.

Everyone in it is invented: names from the directory generator's lists, addresses at real
postal codes, emails at example.org.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from shared.devstack import ROOT, dev_ports, plz_source
from therapist_service.directory.generator import (
    FEMALE_NAMES,
    LAST_NAMES,
    MALE_NAMES,
    NoPlaceData,
    generate_directory,
    read_places,
)

SHORT = {
    "patient_service": "patient",
    "therapist_service": "therapist",
    "matching_service": "matching",
    "communication_service": "communication",
    "geocoding_service": "geocoding",
}
DIAGNOSES = ("F32.1", "F33.1", "F41.1", "F40.1", "F43.1", "F42.0", "F45.0")
SYMPTOMS = ("low_mood", "sleep_problems", "anxiety", "exhaustion", "grief", "panic_attacks")
DAYS = ("mon", "tue", "wed", "thu", "fri")


class Stack:
    """The running dev stack: one base URL per service, the admin token."""

    def __init__(self, urls: dict[str, str], token: str) -> None:
        self.urls = urls
        self.token = token
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, service: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; the caller checks the status."""
        return self.session.request(method, f"{self.urls[service]}{path}", timeout=60, **kwargs)

    def expect(self, status: int, method: str, service: str, path: str, **kwargs: Any) -> Any:
        """One request that must answer `status`; its JSON."""
        response = self.request(method, service, path, **kwargs)
        if response.status_code != status:
            raise SystemExit(
                f"{method} {self.urls[service]}{path}: {response.status_code} {response.text}"
            )
        return response.json()


def admin_token(data_dir: Path) -> str:
    """BOOTSTRAP_ADMIN_TOKEN, else the token `make run` keeps in DEV_DATA_DIR/admin-token."""
    configured = os.environ.get("BOOTSTRAP_ADMIN_TOKEN")
    if configured:
        return configured
    path = data_dir / "admin-token"
    if not path.is_file():
        raise SystemExit(f"{path} not found: start the stack first (make run)")
    return path.read_text().strip()


def wait_for(what: str, condition: Callable[[], Any], timeout: float) -> Any:
    """Poll `condition` until it returns something truthy, or stop with a message."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.5)


def import_directory(
    stack: Stack, region: str, therapists: int, seed: int, source: str
) -> list[dict[str, Any]]:
    """Generate a directory of the region and import its newest snapshot; the therapists."""
    try:
        places = [p for p in read_places(source) if p.postal_code.startswith(region)]
    except NoPlaceData as exc:
        raise SystemExit(f"{exc} (set PLZ_DATA to a GeoNames CSV)") from None
    if not places:
        raise SystemExit(f"no postal code starts with {region} in {source}")
    with tempfile.TemporaryDirectory() as folder:
        generate_directory(Path(folder), places, therapists=therapists, seed=seed)
        (newest,) = [p for p in Path(folder).iterdir() if p.name.isdigit() and _newest(p)]
        for path in sorted(newest.glob("*.json")):
            stack.expect(
                201,
                "POST",
                "therapist",
                "/api/therapist-imports",
                data=path.read_bytes(),
                headers={"Content-Type": "application/json"},
            )
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        listed = stack.expect(
            200,
            "GET",
            "therapist",
            f"/api/therapists?postal_code_prefix={region}&per_page=100&page={page}",
        )
        found += listed["items"]
        if len(found) >= listed["total"] or not listed["items"]:
            return found
        page += 1


def _newest(folder: Path) -> bool:
    siblings = [p.name for p in folder.parent.iterdir() if p.name.isdigit()]
    return folder.name == max(siblings)


def patient_body(rng: random.Random, postal_code: str, index: int) -> dict[str, Any]:
    """An invented patient at `postal_code`; nine in ten qualified."""
    gender = rng.choice(("female", "female", "male", "diverse"))
    first = rng.choice(MALE_NAMES if gender == "male" else FEMALE_NAMES)
    last = rng.choice(LAST_NAMES)
    birth = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 52))
    slots = {day: ["08:00-18:00"] for day in rng.sample(DAYS, rng.randint(2, 5))}
    qualified = rng.random() < 0.9
    return {
        "gender": gender,
        "first_name": first,
        "last_name": last,
        "postal_code": postal_code,
        "birth_date": birth.isoformat(),
        "email": f"{first.lower()}.{last.lower()}.{index}@example.org".encode(
            "ascii", "ignore"
        ).decode(),
        "diagnosis": rng.choice(DIAGNOSES),
        "symptoms": rng.sample(SYMPTOMS, 2),
        "availability": slots,
        "contract_signed": qualified,
        "payment_received": qualified,
    }


def start_searches(stack: Stack, patient_ids: list[int], timeout: float) -> dict[int, int]:
    """Start a search for every qualified patient once matching has located them."""
    started: dict[int, int] = {}
    pending = list(patient_ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        waiting = []
        for patient_id in pending:
            response = stack.request(
                "POST", "matching", "/api/patient-searches", json={"patient_id": patient_id}
            )
            if response.status_code == 201:
                started[patient_id] = response.json()["id"]
            elif response.status_code == 404:  # patient.created on its way
                waiting.append(patient_id)
            elif response.status_code == 422:
                unmet = response.json()["error"]["details"].get("unmet_criteria", [])
                if unmet == ["location_unresolved"]:  # location.resolved on its way
                    waiting.append(patient_id)
            elif response.status_code != 409:
                raise SystemExit(f"search for patient {patient_id}: {response.text}")
        pending = waiting
        if pending:
            time.sleep(1)
    return started


def answer(stack: Stack, inquiry: dict[str, Any]) -> dict[str, Any]:
    """The therapist takes the first patient and has no place for the others."""
    outcomes = [{"search_id": inquiry["search_ids"][0], "outcome": "accepted"}] + [
        {"search_id": s, "outcome": "rejected_capacity"} for s in inquiry["search_ids"][1:]
    ]
    kind = "full_acceptance" if len(outcomes) == 1 else "partial_acceptance"
    return dict(
        stack.expect(
            200,
            "PUT",
            "matching",
            f"/api/inquiries/{inquiry['id']}/response",
            json={"response_type": kind, "channel": "email", "patients": outcomes},
        )
    )


def tour(stack: Stack, data_dir: Path, facts: dict[str, Any]) -> str:
    """The guided tour: shell lines to paste, with the ids created."""
    u = {name: url for name, url in stack.urls.items()}
    token = (
        "$BOOTSTRAP_ADMIN_TOKEN"
        if os.environ.get("BOOTSTRAP_ADMIN_TOKEN")
        else f"$(cat {data_dir / 'admin-token'})"
    )
    auth = '-H "Authorization: Bearer $TOKEN"'
    patient, search = facts["patient_id"], facts["search_id"]
    inquiry, therapist = facts["open_inquiry_id"], facts["therapist_id"]
    placed = facts["placed_search_id"]
    follow_up_as_of = (datetime.now(UTC) + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M")
    call_day = (datetime.now(UTC) + timedelta(days=9)).date().isoformat()
    lines = [
        "",
        f"Demo data loaded: {facts['therapists']} therapists in region {facts['region']}, "
        f"{facts['patients']} patients, {facts['searches']} searches, bundle run "
        f"{facts['run_id']} dated {facts['as_of']} with {facts['inquiries']} inquiries, "
        f"{facts['answered']} of them answered.",
        "",
        "A guided tour (paste the lines into a shell):",
        "",
        f"TOKEN={token}",
        "",
        "# 1. a patient and their search (waiting since registration, contact budget)",
        f"curl -s {auth} {u['patient']}/api/patients/{patient}",
        f"curl -s {auth} {u['matching']}/api/patient-searches/{search}",
        "# the longest-waiting searches of the region",
        f"curl -s {auth} '{u['matching']}/api/patient-searches?status=active"
        f"&postal_code_prefix={facts['region']}&per_page=5'",
        "",
        "# 2. the bundle run and one of its inquiries",
        f"curl -s {auth} {u['matching']}/api/bundle-runs/{facts['run_id']}",
        f"curl -s {auth} {u['matching']}/api/inquiries/{inquiry}",
        "",
        "# 3. its email (the scheduler sends queued mail every minute; the SMTP sink keeps it in "
        f"{data_dir / 'mail' / 'new'})",
        f"curl -s {auth} '{u['communication']}/api/emails?inquiry_id={inquiry}'",
        f"curl -s {auth} {u['communication']}/api/emails/{facts['email_id']}",
        "",
        "# 4. no answer for a week: the daily follow-up run books calls (here: 8 days ahead)",
        f"set -a; . {data_dir / 'dev.env'}; set +a   # the database (make run writes it)",
        f"ANSWER_LINK_SECRET=$(cat {data_dir / 'answer-link-secret'}) PYTHONPATH={ROOT} "
        f"{sys.executable} -m matching_service.cli follow-ups --as-of {follow_up_as_of}",
        f"curl -s {auth} '{u['communication']}/api/phone-calls?date={call_day}'",
        f"curl -s {auth} -X PATCH -H 'Content-Type: application/json' "
        f'-d \'{{"outcome": "reached"}}\' {u["communication"]}/api/phone-calls/CALL_ID',
        "",
        "# 5. the answer heard on the phone (every patient of the inquiry needs an outcome)",
        f"curl -s {auth} -X PUT -H 'Content-Type: application/json' "
        f"-d '{json.dumps(facts['answer_body'])}' "
        f"{u['matching']}/api/inquiries/{inquiry}/response",
        "",
        "# 6. the practice cools down; a placed patient's trial",
        f"curl -s {auth} {u['matching']}/api/contactability/{therapist}",
        f"curl -s {auth} {u['matching']}/api/patient-searches/{placed}",
        f"curl -s {auth} -X POST -H 'Content-Type: application/json' "
        f'-d \'{{"outcome": "success"}}\' '
        f"{u['matching']}/api/patient-searches/{placed}/trial-outcome",
        f"curl -s {auth} {u['patient']}/api/patients/{facts['placed_patient_id']}   "
        "# in_therapy soon after",
        "",
        "# 7. the contact log for the insurer, and the figures",
        f"curl -s {auth} {u['matching']}/api/patient-searches/{placed}/contact-log",
        f"curl -s {auth} '{u['matching']}/api/patient-searches/{placed}/contact-log?format=csv'",
        f"curl -s {auth} '{u['matching']}/api/analytics/summary?postal_code_prefix="
        f"{facts['region']}'",
        "",
        "Every service documents its API at /docs, e.g. " + f"{u['matching']}/docs",
        "",
    ]
    return "\n".join(lines)


def load(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Put the data set into the stack; what the tour needs to know."""
    rng = random.Random(args.seed)
    source = args.plz_data or plz_source()
    therapists = import_directory(stack, args.region, args.therapists, args.seed, source)
    postal_codes = sorted({t["postal_code"] for t in therapists})
    print(f"imported {len(therapists)} therapists at {len(postal_codes)} postal codes", flush=True)
    # matching needs them located before a run can use them
    wait_for(
        "the therapists in matching",
        lambda: (
            stack.request(
                "GET", "matching", f"/api/contactability/{therapists[-1]['id']}"
            ).status_code
            == 200
        ),
        args.timeout,
    )
    patient_ids = []
    for index in range(args.patients):
        body = patient_body(rng, rng.choice(postal_codes), index)
        created = stack.expect(201, "POST", "patient", "/api/patients", json=body)
        if body["contract_signed"]:
            patient_ids.append(created["id"])
    print(f"registered {args.patients} patients ({len(patient_ids)} qualified)", flush=True)
    searches = start_searches(stack, patient_ids, args.timeout)
    print(f"started {len(searches)} searches", flush=True)
    if not searches:
        raise SystemExit("no search could start: is the PLZ data loaded (see make run's output)?")
    as_of = (datetime.now(UTC) - timedelta(days=args.days_ago)).replace(microsecond=0)
    run = stack.expect(
        201,
        "POST",
        "matching",
        "/api/bundle-runs",
        json={"postal_code_prefix": args.region, "as_of": as_of.isoformat()},
    )
    written = [i for i in run["inquiries"] if i["id"] is not None]
    print(f"bundle run {run['id']} as of {as_of:%Y-%m-%d}: {len(written)} inquiries", flush=True)
    if len(written) < 2:
        raise SystemExit(f"the run wrote {len(written)} inquiries: try more patients")
    answered = written[: max(1, len(written) // 3)]
    for inquiry in answered:
        answer(stack, inquiry)
    placed = answered[0]["search_ids"][0]
    placed_patient = next(p for p, s in searches.items() if s == placed)
    open_inquiry = written[-1]
    emails = wait_for(
        "its inquiry email to be queued (inquiry.created)",
        lambda: stack.expect(
            200, "GET", "communication", f"/api/emails?inquiry_id={open_inquiry['id']}"
        )["items"],
        args.timeout,
    )
    waiting_patient, waiting_search = next(iter(searches.items()))
    return {
        "region": args.region,
        "therapists": len(therapists),
        "patients": args.patients,
        "searches": len(searches),
        "run_id": run["id"],
        "as_of": f"{as_of:%Y-%m-%d}",
        "inquiries": len(written),
        "answered": len(answered),
        "patient_id": waiting_patient,
        "search_id": waiting_search,
        "open_inquiry_id": open_inquiry["id"],
        "email_id": emails[0]["id"],
        "therapist_id": open_inquiry["therapist_id"],
        "placed_search_id": placed,
        "placed_patient_id": placed_patient,
        "answer_body": {
            "response_type": "full_rejection",
            "channel": "phone",
            "patients": [
                {"search_id": s, "outcome": "rejected_capacity"} for s in open_inquiry["search_ids"]
            ],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tools.demo [--patients N] [--therapists N] [--region PREFIX] ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--therapists", type=int, default=60)
    parser.add_argument("--region", default="04", help="postal-code prefix (default 04: Leipzig)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days-ago", type=int, default=9, help="the bundle run's date")
    parser.add_argument("--plz-data", help="GeoNames CSV (default PLZ_DATA or ../shared/data)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for events")
    args = parser.parse_args(argv)
    data_dir = Path(os.environ.get("DEV_DATA_DIR", ROOT / "var"))
    urls = {SHORT[s]: f"http://127.0.0.1:{port}" for s, port in dev_ports().items()}
    stack = Stack(urls, admin_token(data_dir))
    for name, url in urls.items():
        try:
            requests.get(f"{url}/ready", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise SystemExit(
                f"{name} at {url} is not ready ({exc}): start it with make run"
            ) from None
    facts = load(stack, args)
    print(tour(stack, data_dir, facts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
