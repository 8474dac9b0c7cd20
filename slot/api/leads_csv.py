"""A leads CSV, read row by row: every good row kept, every bad one reported with its line.

Columns (header row, any order, extra columns ignored): `phone` (E.164, required), `name`,
`time_zone` (IANA, default America/New_York), `lead_id` (default from the phone). A row is bad
for a malformed phone, an unknown time zone, a bad lead id, or a phone or lead id already seen
(earlier in the file or among the campaign's leads).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection

from pydantic import BaseModel, ValidationError

from activities.campaign import normal_phone
from workflows.campaign_plan import CampaignLead

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
COLUMNS = ("phone", "name", "time_zone", "lead_id")


class RowError(BaseModel):
    line: int
    errors: list[str]


class LeadsFile(BaseModel):
    leads: list[CampaignLead]
    rejected: list[RowError]


class BadLeadsFile(ValueError):
    """The file as a whole cannot be read (not UTF-8, no header, no `phone` column)."""


def read_leads(
    text: str, *, known_phones: Collection[str] = (), known_ids: Collection[str] = ()
) -> LeadsFile:
    """Parse `text`; `known_*` are the campaign's leads already kept (normal phones, ids)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "phone" not in header:
        shown = ", ".join(header) if header else "nothing"
        raise BadLeadsFile(f"the CSV has no 'phone' column (its header row has {shown})")
    reader.fieldnames = header
    phones: dict[str, int] = {}
    ids: dict[str, int] = {}
    leads: list[CampaignLead] = []
    rejected: list[RowError] = []
    for row in reader:
        line = reader.line_num
        values = {key: (row.get(key) or "").strip() for key in COLUMNS}
        if not any(values.values()):
            continue
        errors = _row_errors(values)
        phone = normal_phone(values["phone"])
        lead_id = values["lead_id"] or f"lead{phone.lstrip('+')}"
        if phone in known_phones:
            errors.append(f"phone {values['phone']!r} is already a lead of this campaign")
        elif phone in phones:
            errors.append(f"phone {values['phone']!r} repeats line {phones[phone]}")
        if lead_id in known_ids:
            errors.append(f"lead_id {lead_id!r} is already a lead of this campaign")
        elif lead_id in ids:
            errors.append(f"lead_id {lead_id!r} repeats line {ids[lead_id]}")
        if not errors:
            try:
                lead = CampaignLead(
                    lead_id=lead_id,
                    name=values["name"],
                    phone=phone,
                    time_zone=values["time_zone"] or "America/New_York",
                )
            except ValidationError as error:
                errors += [_message(item) for item in error.errors()]
        if errors:
            rejected.append(RowError(line=line, errors=errors))
            continue
        phones[phone] = line
        ids[lead_id] = line
        leads.append(lead)
    return LeadsFile(leads=leads, rejected=rejected)


def _row_errors(values: dict[str, str]) -> list[str]:
    errors = []
    phone = values["phone"]
    if not phone:
        errors.append("phone is missing")
    elif not E164.match(normal_phone(phone)) or re.search(r"[^\d\s()+.-]", phone):
        errors.append(f"phone {phone!r} is not an E.164 number (+ and 8 to 15 digits)")
    return errors


def _message(error: object) -> str:
    assert isinstance(error, dict)
    field = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if field == "lead_id" and error.get("type") == "string_pattern_mismatch":
        message = "use letters, digits and _.:@+- only, at most 80"
    return f"{field}: {message}" if field else message
