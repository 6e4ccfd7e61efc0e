"""python -m bench.data clean, sample and review: offensive text, personal data, and a hand-checked sample."""

import csv
import hashlib
import json

import pytest

from bench.cleaning import offensive, personal_data, redact
from bench.data import SEPARATOR, main
from bench.review import allocate

TEXT = (
    "Mail jo.smith@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32, from 192.168.1.20 or 2001:db8::1"
)


def test_each_kind_of_personal_data_is_found_and_redacted():
    found = personal_data(TEXT)
    assert [f.kind for f in found] == ["email", "phone", "card", "iban", "ip", "ip"]
    assert redact(TEXT, found) == "Mail [EMAIL] or call [PHONE]; card [CARD], IBAN [IBAN], from [IP] or [IP]"
    assert [f.kind for f in personal_data(TEXT, kinds=("email", "ip"))] == ["email", "ip", "ip"]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails the Luhn check
        "IBAN GB82 WEST 1234 5698 7654 33",  # wrong check digits
        "version 999.1.1.1 and 1.2.3",  # not an IPv4 address
        "at 12:30:45, std::vector and ::",  # a time and C++, not IPv6 addresses
        "4429 * 300 = 1328700 = 1727310 + 31003",  # arithmetic
        "write to me at the office",
    ],
)
def test_what_only_looks_like_personal_data_is_left(text):
    assert personal_data(text) == []


def test_an_address_in_a_url_is_an_ip_address_though_phonenumbers_reads_it_too():
    assert [f.kind for f in personal_data("see http://93.174.88.196/img.php")] == ["ip"]


def test_a_national_phone_number_is_read_in_the_regions_format():
    assert [f.kind for f in personal_data("call (202) 555-0143", region="US")] == ["phone"]
    assert personal_data("call (202) 555-0143", region="DE") == []


def test_offensive_text_scores_high_and_plain_text_low():
    insult, plain = offensive(["you are a fucking idiot", "have a nice day"])
    assert insult > 0.9 and plain < 0.1


def _write(path, rows):
    path.write_text(
        "".join(json.dumps({"prompt": p + SEPARATOR, "completion": c, "id": i}) + "\n" for i, (p, c) in enumerate(rows))
    )


def test_clean_writes_a_cleaned_copy_and_a_report_without_the_text_found(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    _write(
        source,
        [
            ("Refund to jo.smith@example.com please", "positive"),
            ("you are a fucking idiot", "negative"),
            ("Card 4111-1111-1111-1111 was charged twice", "negative"),
            ("Nice weather today", "positive"),
        ],
    )
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "out.jsonl"
    assert main(["clean", str(source), "--out", str(out)]) == 0
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    cleaned = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in cleaned] == [
        "Refund to [EMAIL] please" + SEPARATOR,
        "Card [CARD] was charged twice" + SEPARATOR,
        "Nice weather today" + SEPARATOR,
    ]
    assert [r["id"] for r in cleaned] == [0, 2, 3]  # the lines' other keys kept
    report_text = (tmp_path / "out.jsonl.report.json").read_text()
    report = json.loads(report_text)
    assert report["kept"] == 3 and [r["line"] for r in report["offensive"]["records"]] == [2]
    assert report["personal_data"]["counts"] == {"email": 1, "card": 1, "iban": 0, "ip": 0, "phone": 0}
    assert "jo.smith" not in report_text and "4111" not in report_text
    assert "3 of 4 records; 1 offensive (dropped); redacted: 1 email, 1 card" in capsys.readouterr().out
    assert main(["clean", str(source), "--out", str(out), "--offensive", "flag"]) == 0
    assert len(out.read_text().splitlines()) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--find", "email,ssn"],
            "--find 'email,ssn': expected a comma-separated list from email, card, iban, ip, phone",
        ),
        (["--region", "XX"], "--region 'XX': expected a country code phonenumbers knows"),
        (["--threshold", "0"], "--threshold 0.0: expected a probability in (0, 1]"),
    ],
)
def test_bad_clean_arguments_are_refused_before_reading(tmp_path, capsys, args, message):
    source = tmp_path / "in.jsonl"
    _write(source, [("a b c", "x"), ("d e f", "y")])
    with pytest.raises(SystemExit):
        main(["clean", str(source), "--out", str(tmp_path / "out.jsonl"), *args])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def _save(sheet, rows):
    with sheet.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)


def test_allocation_is_proportional_with_every_stratum_present():
    assert allocate({"a": 50, "b": 30, "c": 20}, 7) == {"a": 4, "b": 2, "c": 1}  # 3.5, 2.1, 1.4: a rounds up
    assert allocate({"a": 90, "b": 9, "c": 1}, 10) == {"a": 8, "b": 1, "c": 1}
    assert allocate({"a": 5, "b": 5}, 20) == {"a": 5, "b": 5}


def test_a_sample_is_stratified_seeded_and_its_review_gives_the_exact_interval(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    _write(source, [(f"review number {i}", "positive" if i % 4 else "negative") for i in range(40)])
    sheet = tmp_path / "review.csv"
    assert main(["sample", str(source), "--size", "8", "--seed", "1", "--out", str(sheet)]) == 0
    rows = list(csv.DictReader(sheet.open(newline="")))
    assert sorted(r["stratum"] for r in rows) == ["negative"] * 2 + ["positive"] * 6  # 10 and 30 of 40
    assert main(["sample", str(source), "--size", "8", "--seed", "1", "--out", str(tmp_path / "again.csv")]) == 0
    assert (tmp_path / "again.csv").read_text() == sheet.read_text()
    for i, row in enumerate(rows):
        row["verdict"] = "bad" if i == 0 else "ok" if i < 5 else ""
    _save(sheet, rows)
    capsys.readouterr()
    assert main(["review", str(sheet)]) == 0
    out = capsys.readouterr().out
    # 1 bad of 5: Clopper-Pearson [0.0051, 0.7164]
    assert "5 rows reviewed (3 not yet), 1 bad: error rate 20.0% (95% Clopper-Pearson interval 0.5% to 71.6%)" in out
    assert f"line {rows[0]['line']} ({rows[0]['stratum']}): bad" in out
    rows[1]["verdict"] = "maybe"
    _save(sheet, rows)
    assert main(["review", str(sheet)]) == 1
    assert f"row 3 (line {rows[1]['line']}): verdict 'maybe': expected ok, bad or empty" in capsys.readouterr().err


def test_generation_data_is_stratified_by_prompt_length(tmp_path):
    source = tmp_path / "in.jsonl"
    _write(source, [("word " * (i + 1), f"answer {i}") for i in range(20)])
    assert main(["sample", str(source), "--size", "4", "--out", str(tmp_path / "s.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "s.csv").open(newline="")))
    assert sorted(r["stratum"] for r in rows) == [f"prompt length Q{q}" for q in (1, 2, 3, 4)]
