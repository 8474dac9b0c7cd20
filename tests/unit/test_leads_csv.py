"""Reading a leads CSV: every good row kept, every bad one named by its line and its fault."""

from __future__ import annotations

import pytest

from slot.api.leads_csv import BadLeadsFile, read_leads


def test_good_rows_are_kept_and_bad_ones_reported_by_line() -> None:
    text = (
        "\ufeffPhone, Name ,time_zone,lead_id,crm_owner\n"
        '+12125550101,"Doe, Jane",America/New_York,a1,kim\n'
        "\n"
        "+1 (212) 555-0102,,,a2,\n"
        "call me,Bob,,a3,\n"
        "+12125550103,Ann,Europe/Atlantis,a4,\n"
        "+1 212.555.0101,Jane again,,a5,\n"
        "+12125550104,Eve,,a2,\n"
        ",Nobody,,,\n"
        "+12125550105,Max,,bad id,\n"
    )
    parsed = read_leads(text.removeprefix("\ufeff"))
    assert [(lead.lead_id, lead.phone) for lead in parsed.leads] == [
        ("a1", "+12125550101"),
        ("a2", "+12125550102"),
    ]
    assert parsed.leads[0].name == "Doe, Jane"
    assert parsed.leads[1].time_zone == "America/New_York"
    errors = {row.line: row.errors for row in parsed.rejected}
    assert errors == {
        5: ["phone 'call me' is not an E.164 number (+ and 8 to 15 digits)"],
        6: ["time_zone: unknown time zone 'Europe/Atlantis'"],
        7: ["phone '+1 212.555.0101' repeats line 2"],
        8: ["lead_id 'a2' repeats line 4"],
        9: ["phone is missing"],
        10: ["lead_id: use letters, digits and _.:@+- only, at most 80"],
    }


def test_leads_already_kept_are_duplicates_and_ids_default_from_the_phone() -> None:
    parsed = read_leads(
        "phone\n+12125550101\n+12125550102\n", known_phones={"+12125550101"}, known_ids=set()
    )
    assert [lead.lead_id for lead in parsed.leads] == ["lead12125550102"]
    assert parsed.rejected[0].line == 2
    assert parsed.rejected[0].errors == ["phone '+12125550101' is already a lead of this campaign"]


@pytest.mark.parametrize("text", ["", "name,time_zone\nBob,UTC\n"])
def test_a_file_without_a_phone_column_is_refused_whole(text: str) -> None:
    with pytest.raises(BadLeadsFile, match="no 'phone' column"):
        read_leads(text)
