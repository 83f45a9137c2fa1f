"""Tests for the response-code table (rules/response_codes.yaml) and its classifier."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from monitor.domain import OUTCOMES
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeError, ResponseCodeTable, default_table

# ISO 8583:1987 field 39 codes the standard assigns (the rest of 00-99 is reserved).
ISO_DEFINED = (
    [f"{n:02d}" for n in range(45)]
    + [f"{n:02d}" for n in range(51, 69)]
    + ["75"]
    + [f"{n:02d}" for n in range(90, 97)]
)
ISO_RESERVED = (
    [f"{n:02d}" for n in range(45, 51)]
    + [f"{n:02d}" for n in range(69, 75)]
    + [f"{n:02d}" for n in range(76, 90)]
    + [f"{n:02d}" for n in range(97, 100)]
)

EXPECTED_CLASSES = {
    "approved": ["00", "08", "10", "11", "16"],
    "technical": ["68", "91", "92", "96"],
    "terminal": ["03", "12", "58"],
    "card": ["14", "33", "54", "56", "N7"],
    "customer": ["05", "51", "55", "61", "1A"],
    "fraud": ["04", "07", "34", "41", "43", "59", "63"],
}

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "response_codes.yaml"


@pytest.fixture(scope="module")
def table() -> ResponseCodeTable:
    """The shipped table."""
    return default_table()


def _write(tmp_path: Path, document: dict[str, object]) -> Path:
    path = tmp_path / "codes.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _minimal(codes: list[dict[str, str]]) -> dict[str, object]:
    return {
        "timeout": {"class": "technical", "meaning": "No response", "action": "Retry later."},
        "unknown": {"class": "unknown", "meaning": "Unknown code", "action": "Ask operations."},
        "codes": codes,
    }


def test_rules_path_finds_the_checkout_copy() -> None:
    """rules_path resolves the table in the checkout's rules/ folder."""
    assert rules_path("response_codes.yaml") == SHIPPED


def test_rules_path_falls_back_to_the_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a checkout, rules_path finds the wheel's monitor/_rules copy."""
    import monitor.paths

    package = tmp_path / "site-packages" / "monitor"
    (package / "_rules").mkdir(parents=True)
    installed = package / "_rules" / "response_codes.yaml"
    installed.write_bytes(SHIPPED.read_bytes())
    monkeypatch.setattr(monitor.paths, "_PACKAGE", package)
    monkeypatch.setattr(monitor.paths, "_REPO", package.parent)
    assert rules_path("response_codes.yaml") == installed
    assert len(ResponseCodeTable.load(rules_path("response_codes.yaml"))) == len(default_table())


def test_rules_path_names_both_locations_when_missing() -> None:
    """A missing rules file raises FileNotFoundError naming where it looked."""
    with pytest.raises(FileNotFoundError, match=r"rules/no-such\.yaml.*_rules"):
        rules_path("no-such.yaml")


def test_every_iso_code_the_standard_defines_is_listed(table: ResponseCodeTable) -> None:
    """Each ISO 8583:1987 assigned code 00-96 has a meaning, a class and an action."""
    missing = [code for code in ISO_DEFINED if code not in table]
    assert missing == []
    for code in ISO_DEFINED:
        row = table.codes[code]
        assert row.network is None
        assert row.outcome in OUTCOMES and row.outcome != "unknown", code
        assert row.meaning and row.action.endswith("."), code


def test_reserved_codes_classify_unknown_with_their_range_wording(table: ResponseCodeTable) -> None:
    """Codes in the reserved ranges are not listed, classify unknown and say which range."""
    assert [code for code in ISO_RESERVED if code in table] == []
    assert {table.outcome(code) for code in ISO_RESERVED} == {"unknown"}
    assert table.meaning("47") == "Reserved for ISO use"
    assert table.meaning("80") == "Reserved for private use"
    assert table.meaning("99") == "Reserved for national use"


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(outcome, code) for outcome, codes in EXPECTED_CLASSES.items() for code in codes],
)
def test_codes_named_in_the_issue_have_their_class(
    table: ResponseCodeTable, outcome: str, code: str
) -> None:
    """Each response code named in the classification issue maps to its agreed class."""
    assert table.outcome(code) == outcome


def test_meanings_and_actions_use_the_standard_wording(table: ResponseCodeTable) -> None:
    """Meanings follow ISO 8583 / Visa wording; actions tell the relationship manager what to do."""
    assert table.meaning("51") == "Not sufficient funds"
    assert table.meaning("91") == "Issuer or switch is inoperative"
    assert table.meaning("N7") == "Decline for CVV2 failure"
    assert table.codes["N7"].network == "Visa"
    assert table.action("51").startswith("Client had insufficient funds")
    assert "retry shortly" in table.action("91")


def test_timeout_classifies_technical_whatever_the_code(table: ResponseCodeTable) -> None:
    """A timeout (no response code) is technical with the no-response meaning."""
    assert table.outcome(None, "timeout") == "technical"
    assert table.meaning(None, "timeout") == "No response from issuer/switch (timeout)"
    assert table.outcome("00", "timeout") == "technical"
    assert "retry" in table.action(None, "timeout")


def test_unknown_and_missing_codes_classify_unknown(table: ResponseCodeTable) -> None:
    """A code not in the table, or a completed event without a code, is unknown."""
    assert table.outcome("ZZ") == "unknown"
    assert table.outcome(None) == "unknown"
    assert table.meaning("ZZ") == "Response code not in the bank's response-code table"
    assert "operations team" in table.action("ZZ")


def test_vectorised_classify_matches_the_scalar_lookup(table: ResponseCodeTable) -> None:
    """classify() gives every row the same outcome and meaning as the scalar look-ups."""
    codes: list[str | None] = [*ISO_DEFINED, *ISO_RESERVED, "N7", "1A", "ZZ", None, "51", None]
    statuses = ["completed"] * (len(codes) - 2) + ["timeout", "timeout"]
    frame = pl.DataFrame(
        {"response_code": codes, "status": statuses, "amount_minor": range(len(codes))},
        schema_overrides={"response_code": pl.String},
    )
    result = table.classify(frame)
    assert result.columns == [*frame.columns, "outcome", "response_meaning"]
    assert result["outcome"].to_list() == [table.outcome(c, s) for c, s in zip(codes, statuses)]
    assert result["response_meaning"].to_list() == [
        table.meaning(c, s) for c, s in zip(codes, statuses)
    ]
    assert result.row(len(codes) - 1, named=True)["outcome"] == "technical"


def test_classify_without_status_treats_rows_as_completed(table: ResponseCodeTable) -> None:
    """Without a status column a missing code is unknown, not technical."""
    frame = pl.DataFrame({"response_code": ["05", None]}, schema={"response_code": pl.String})
    assert table.classify(frame)["outcome"].to_list() == ["customer", "unknown"]


def test_classify_an_empty_frame_keeps_the_schema(table: ResponseCodeTable) -> None:
    """An empty batch gets the two string columns and no rows."""
    frame = pl.DataFrame(schema={"response_code": pl.String, "status": pl.String})
    result = table.classify(frame)
    assert result.height == 0
    assert result.schema["outcome"] == pl.String
    assert result.schema["response_meaning"] == pl.String


def test_bad_class_names_the_file_and_entry(tmp_path: Path) -> None:
    """A class outside the allowed set is rejected with the file, entry and allowed classes."""
    path = _write(
        tmp_path,
        _minimal([
            {"code": "00", "meaning": "Approved", "class": "approved", "action": "None."},
            {"code": "51", "meaning": "NSF", "class": "funds", "action": "Offer a transfer."},
        ]),
    )
    expected = r"codes\.yaml: codes\[1\] \(code '51'\): class 'funds' is not one of approved, "
    with pytest.raises(ResponseCodeError, match=expected):
        ResponseCodeTable.load(path)


def test_duplicate_code_is_an_error(tmp_path: Path) -> None:
    """A code listed twice is rejected, naming both positions."""
    entry = {"code": "05", "meaning": "Do not honour", "class": "customer", "action": "Call."}
    approved = {"code": "00", "meaning": "Approved", "class": "approved", "action": "None."}
    path = _write(tmp_path, _minimal([entry, approved, entry]))
    expected = r"codes\[2\] \(code '05'\): duplicate code, first listed at codes\[0\]"
    with pytest.raises(ResponseCodeError, match=expected):
        ResponseCodeTable.load(path)


def test_unquoted_numeric_code_is_an_error(tmp_path: Path) -> None:
    """A code YAML read as a number (unquoted 51) is rejected with a hint to quote it."""
    path = tmp_path / "codes.yaml"
    path.write_text(
        "timeout: {class: technical, meaning: No response, action: Retry.}\n"
        "unknown: {class: unknown, meaning: Unknown, action: Ask.}\n"
        "codes:\n  - {code: 51, meaning: NSF, class: customer, action: Transfer.}\n",
        encoding="utf-8",
    )
    with pytest.raises(ResponseCodeError, match=r"code 51 must be a quoted string"):
        ResponseCodeTable.load(path)


@pytest.mark.parametrize("code", ["5", "051", "n7", "5 "])
def test_malformed_code_is_an_error(tmp_path: Path, code: str) -> None:
    """A code that is not two characters [0-9A-Z] is rejected."""
    entry = {"code": code, "meaning": "x", "class": "card", "action": "y."}
    path = _write(tmp_path, _minimal([entry]))
    with pytest.raises(ResponseCodeError, match=r"must match \[0-9A-Z\]\{2\}"):
        ResponseCodeTable.load(path)


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    """A mapping with a repeated key (e.g. two `class:` lines) is rejected, not silently merged."""
    path = tmp_path / "codes.yaml"
    path.write_text(
        "timeout: {class: technical, meaning: No response, action: Retry.}\n"
        "unknown: {class: unknown, meaning: Unknown, action: Ask.}\n"
        "codes:\n  - code: '51'\n    class: customer\n    class: fraud\n"
        "    meaning: NSF\n    action: Transfer.\n",
        encoding="utf-8",
    )
    expected = r"codes\.yaml: not valid YAML: .*duplicate key 'class'"
    with pytest.raises(ResponseCodeError, match=expected):
        ResponseCodeTable.load(path)


def test_timeout_must_be_technical(tmp_path: Path) -> None:
    """The timeout entry cannot be given another class."""
    entry = {"code": "00", "meaning": "Approved", "class": "approved", "action": "None."}
    document = _minimal([entry])
    document["timeout"] = {"class": "customer", "meaning": "No response", "action": "Retry."}
    with pytest.raises(ResponseCodeError, match=r"timeout: class must be 'technical'"):
        ResponseCodeTable.load(_write(tmp_path, document))


def test_missing_action_is_an_error(tmp_path: Path) -> None:
    """An entry without an action is rejected, naming the entry."""
    path = _write(tmp_path, _minimal([{"code": "54", "meaning": "Expired card", "class": "card"}]))
    expected = r"codes\[0\] \(code '54'\): 'action' must be a non-empty string"
    with pytest.raises(ResponseCodeError, match=expected):
        ResponseCodeTable.load(path)


def test_code_both_listed_and_reserved_is_an_error(tmp_path: Path) -> None:
    """A code inside a reserved range cannot also be listed."""
    document = _minimal([{"code": "47", "meaning": "x", "class": "card", "action": "y."}])
    document["reserved"] = [{"from": "45", "to": "50", "meaning": "Reserved for ISO use"}]
    with pytest.raises(ResponseCodeError, match=r"codes 47 are both listed and reserved"):
        ResponseCodeTable.load(_write(tmp_path, document))


def test_response_code_error_is_a_value_error() -> None:
    """Callers can catch a broken table as ValueError."""
    assert issubclass(ResponseCodeError, ValueError)
