"""GeoNames postal-code data -> one centroid per German PLZ. Pure: bytes in, records out.

Three shapes of the same data are read (the format is recognised from the content):

- GeoNames' own tab-separated `DE.txt`, no header, 12 columns: country code, postal code,
  place name, admin name1 (state), admin code1, admin name2, admin code2, admin name3,
  admin code3, latitude, longitude, accuracy;
- that file inside GeoNames' `DE.zip` (the download at download.geonames.org/export/zip);
- the CSV with a header `country_code,zipcode,place,state,...,latitude,longitude` (the
  conversion in ../shared/data/zipcodes.de.csv).

Rows of other countries are skipped. A malformed file is refused whole, with the line and
the reason of each problem (up to `MAX_REPORTED_ERRORS`); messages never quote the line,
so a wrong file given by mistake is not echoed back.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from geocoding_service.rules import POSTAL_CODE, centroid

MAX_REPORTED_ERRORS = 20
MAX_UNPACKED_BYTES = 200 * 1024 * 1024  # the data file inside a ZIP (DE.txt is about 1 MB)
_READ_CHUNK = 1 << 20
COUNTRY = "DE"
TSV_COLUMNS = 12
# header names of the CSV conversion, and the GeoNames names some conversions use instead
_CSV_ALIASES = {
    "country_code": ("country_code", "country code", "countrycode"),
    "postal_code": ("zipcode", "postal_code", "postal code", "postalcode", "plz"),
    "place": ("place", "place_name", "place name", "placename"),
    "state": ("state", "admin_name1", "admin name1", "adminname1"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon", "lng"),
}


class PlzDataError(ValueError):
    """The data cannot be imported; `problems` lists `{line, message}` (line may be None)."""

    def __init__(self, message: str, problems: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


@dataclass(frozen=True)
class PlaceRow:
    """One place of a postal code, as a data line gives it."""

    postal_code: str
    place: str
    state: str | None
    lat: float
    lon: float


@dataclass(frozen=True)
class PostalCodeRecord:
    """One PLZ: the mean of its places' coordinates, its places (sorted) and its state."""

    postal_code: str
    lat: float
    lon: float
    state: str | None
    places: tuple[str, ...]


@dataclass(frozen=True)
class ParsedData:
    """What a file held: its postal codes and how many lines were read or skipped."""

    format: str
    rows: int
    skipped_other_countries: int
    postal_codes: list[PostalCodeRecord]


def parse(raw: bytes, *, max_unpacked: int = MAX_UNPACKED_BYTES) -> ParsedData:
    """Postal codes of a GeoNames file (TSV, ZIP with the TSV, or the CSV with header); a
    ZIP's data file may unpack to at most `max_unpacked` bytes."""
    zipped = raw[:4] == b"PK\x03\x04"
    text = _decode(_member_of_zip(raw, max_unpacked) if zipped else raw)
    first = text.split("\n", 1)[0]
    is_csv = "\t" not in first and _header_index(next(csv.reader([first]), [])) is not None
    rows, skipped = _collect(_csv_rows(text) if is_csv else _tsv_rows(text))
    if not rows:
        if skipped:
            message = f"no German ({COUNTRY}) postal codes found ({skipped} other rows skipped)"
        else:
            message = "the file holds no data"
        raise PlzDataError(message)
    kind = "csv" if is_csv else "geonames tsv"
    return ParsedData(
        format=f"zip ({kind})" if zipped else kind,
        rows=len(rows),
        skipped_other_countries=skipped,
        postal_codes=aggregate(rows),
    )


def aggregate(rows: Iterable[PlaceRow]) -> list[PostalCodeRecord]:
    """One record per PLZ: centroid = mean of its places; state = the most frequent one."""
    by_code: dict[str, list[PlaceRow]] = {}
    for row in rows:
        by_code.setdefault(row.postal_code, []).append(row)
    records = []
    for code in sorted(by_code):
        places = by_code[code]
        middle = centroid([(place.lat, place.lon) for place in places])
        states = Counter(place.state for place in places if place.state)
        records.append(
            PostalCodeRecord(
                postal_code=code,
                lat=middle.lat,
                lon=middle.lon,
                # ties go to the alphabetically first state, so the result is order-free
                state=min(states, key=lambda s: (-states[s], s)) if states else None,
                places=tuple(sorted({place.place for place in places if place.place})),
            )
        )
    return records


def _member_of_zip(raw: bytes, max_unpacked: int) -> bytes:
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise PlzDataError("not a readable ZIP archive") from None
    with archive:
        names = [
            info.filename
            for info in archive.infolist()
            if not info.is_dir()
            and info.filename.lower().endswith((".txt", ".csv"))
            and not info.filename.lower().rsplit("/", 1)[-1].startswith("readme")
        ]
        preferred = [name for name in names if name.rsplit("/", 1)[-1] == f"{COUNTRY}.txt"]
        chosen = preferred or names
        if len(chosen) != 1:
            raise PlzDataError(
                f"the ZIP archive must hold one data file ({COUNTRY}.txt), found "
                f"{len(names)}: {', '.join(sorted(names)[:5]) or 'none'}"
            )
        info = archive.getinfo(chosen[0])
        too_large = PlzDataError(
            f"{chosen[0]} in the ZIP archive unpacks to more than {_size_text(max_unpacked)}"
        )
        if info.file_size > max_unpacked:
            raise too_large
        try:
            # read in chunks up to the limit: the size in the header is not trusted
            with archive.open(info) as member:
                chunks, size = [], 0
                while chunk := member.read(min(_READ_CHUNK, max_unpacked + 1 - size)):
                    size += len(chunk)
                    if size > max_unpacked:
                        raise too_large
                    chunks.append(chunk)
            return b"".join(chunks)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise PlzDataError(f"cannot read {chosen[0]} from the ZIP archive: {exc}") from None


def _size_text(size: int) -> str:
    return f"{size // 2**20} MB" if size >= 2**20 else f"{size} bytes"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PlzDataError(
            "the file is not UTF-8 text", [{"line": line, "message": "not UTF-8 text"}]
        ) from None


def _header_index(names: list[str]) -> dict[str, int] | None:
    """Column index per field when `names` is the CSV header, else None."""
    names = [name.strip().lower() for name in names]
    index = {}
    for key, aliases in _CSV_ALIASES.items():
        found = next((names.index(alias) for alias in aliases if alias in names), None)
        if found is not None:
            index[key] = found
        elif key in ("postal_code", "latitude", "longitude"):
            return None
    return index


_Result = tuple[int, PlaceRow | None, str | None]  # line, row (None: other country), problem


def _csv_rows(text: str) -> Iterator[_Result]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = _header_index(next(reader))
    assert header is not None  # `parse` saw it
    width = max(header.values()) + 1
    for fields in reader:
        line = reader.line_num
        if not any(field.strip() for field in fields):
            continue
        if len(fields) < width:
            yield line, None, f"expected at least {width} columns, found {len(fields)}"
            continue
        country = fields[header["country_code"]].strip() if "country_code" in header else COUNTRY
        yield _row(
            line,
            country,
            fields[header["postal_code"]],
            fields[header["place"]] if "place" in header else "",
            fields[header["state"]] if "state" in header else "",
            fields[header["latitude"]],
            fields[header["longitude"]],
        )


def _tsv_rows(text: str) -> Iterator[_Result]:
    first = True
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != TSV_COLUMNS:
            problem = f"expected {TSV_COLUMNS} tab-separated columns, found {len(fields)}"
            if first:  # not one bad line of the format: some other file altogether
                raise PlzDataError(
                    f"line {number}: not GeoNames postal-code data (neither the CSV header "
                    f"nor {TSV_COLUMNS} tab-separated columns)",
                    [{"line": number, "message": problem}],
                )
            yield number, None, problem
            continue
        first = False
        yield _row(number, fields[0], fields[1], fields[2], fields[3], fields[9], fields[10])


def _row(
    line: int, country: str, code: str, place: str, state: str, lat_text: str, lon_text: str
) -> _Result:
    if country.strip().upper() != COUNTRY:
        return line, None, None
    code = code.strip()
    if not POSTAL_CODE.fullmatch(code):
        return line, None, "postal code is not 5 digits"
    lat, lon = _number(lat_text), _number(lon_text)
    if lat is None or not -90 <= lat <= 90:
        return line, None, "latitude is not a number between -90 and 90"
    if lon is None or not -180 <= lon <= 180:
        return line, None, "longitude is not a number between -180 and 180"
    return line, PlaceRow(code, place.strip(), state.strip() or None, lat, lon), None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _collect(results: Iterable[_Result]) -> tuple[list[PlaceRow], int]:
    rows: list[PlaceRow] = []
    problems: list[dict[str, object]] = []
    skipped = 0
    for line, row, problem in results:
        if problem is not None:
            problems.append({"line": line, "message": problem})
        elif row is None:
            skipped += 1
        else:
            rows.append(row)
    if problems:
        shown = problems[:MAX_REPORTED_ERRORS]
        first = shown[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PlzDataError(f"line {first['line']}: {first['message']}{more}", shown)
    return rows, skipped
