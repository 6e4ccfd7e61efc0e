"""Clean a prompt/completion file before training (`python -m bench.data clean`): offensive text flagged or
dropped, personal data found and redacted. Both run offline.

Offensive text: alt-profanity-check, a linear SVM trained on 200k human-labelled comments whose model ships in
the package, gives each prompt and each completion the probability that it is offensive; a record is offensive
when either reaches the threshold (0.5: the package's own `predict`).

Personal data, each replaced by its tag ([EMAIL], [PHONE], [CARD], [IBAN], [IP]):
  - email addresses, by a pattern (scrubadub 2.0.1's detector cuts "me at jo.smith" out of "mail me at
    jo.smith@example.com" and leaves the address);
  - phone numbers, by phonenumbers (Google's libphonenumber): international ones with "+" anywhere, national
    ones in the format of `region`; a valid number only;
  - card numbers, 13 to 19 digits (spaces or dashes between them allowed) that pass the Luhn check
    (python-stdnum);
  - IBANs, by python-stdnum's check of the country's length and the mod-97 check digits;
  - IP addresses, v4 and v6, that Python's ipaddress accepts.
Where two findings overlap, the one that starts first (then the longer) is kept: an address in a URL that
phonenumbers also reads as a number is an IP address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

KINDS = ("email", "card", "iban", "ip", "phone")  # where two find the same span, the first of these names it
THRESHOLD = 0.5

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?=[0-9A-Fa-f:]*[0-9A-Fa-f])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int

    @property
    def tag(self) -> str:
        return f"[{self.kind.upper()}]"


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def regions() -> set[str]:
    """The countries whose national phone formats phonenumbers knows (ISO 3166 codes: US, GB, DE, ...)."""
    import phonenumbers

    return phonenumbers.SUPPORTED_REGIONS


def personal_data(text: str, kinds=KINDS, region: str = "US") -> list[Finding]:
    """The personal data in `text` of the given kinds, in order, without overlaps."""
    import phonenumbers
    from stdnum import iban, luhn

    found = []
    if "email" in kinds:
        found += [Finding("email", m.start(), m.end()) for m in EMAIL.finditer(text)]
    if "phone" in kinds:
        found += [Finding("phone", m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region)]
    if "card" in kinds:
        cards = (m for m in CARD.finditer(text) if luhn.is_valid(re.sub(r"\D", "", m.group())))
        found += [Finding("card", m.start(), m.end()) for m in cards]
    if "iban" in kinds:
        found += [Finding("iban", m.start(), m.end()) for m in IBAN.finditer(text) if iban.is_valid(m.group())]
    if "ip" in kinds:
        ips = (m for pattern in (IPV4, IPV6) for m in pattern.finditer(text) if _ip(m.group()))
        found += [Finding("ip", m.start(), m.end()) for m in ips]
    kept, end = [], -1
    for f in sorted(found, key=lambda f: (f.start, -f.end, KINDS.index(f.kind))):
        if f.start >= end:
            kept.append(f)
            end = f.end
    return kept


def redact(text: str, findings: list[Finding]) -> str:
    for f in reversed(findings):  # from the end, so that earlier spans keep their offsets
        text = text[: f.start] + f.tag + text[f.end :]
    return text


def offensive(texts: list[str]) -> list[float]:
    """The probability that each text is offensive."""
    from profanity_check import predict_prob

    return [float(p) for p in predict_prob(texts)] if texts else []


def clean(records, kinds=KINDS, region: str = "US", threshold: float = THRESHOLD, drop_offensive: bool = True):
    """The cleaned (record, prompt body, completion) of every record kept, and the report: which lines were
    offensive (with their probabilities) and where personal data was redacted (kind and field, never the text)."""
    scores = offensive([t for r in records for t in (r.body, r.completion)])
    kept, flagged, redacted = [], [], []
    for i, r in enumerate(records):
        body_p, completion_p = scores[2 * i], scores[2 * i + 1]
        if max(body_p, completion_p) >= threshold:
            flagged.append({"line": r.line, "prompt": round(body_p, 4), "completion": round(completion_p, 4)})
            if drop_offensive:
                continue
        texts = {}
        for field, text in (("prompt", r.body), ("completion", r.completion)):
            findings = personal_data(text, kinds, region)
            redacted += [{"line": r.line, "field": field, "kind": f.kind} for f in findings]
            texts[field] = redact(text, findings)
        kept.append((r, texts["prompt"], texts["completion"]))
    counts = {k: sum(f["kind"] == k for f in redacted) for k in kinds}
    report = {
        "records": len(records),
        "kept": len(kept),
        "offensive": {
            "threshold": threshold,
            "action": "dropped" if drop_offensive else "flagged",
            "records": flagged,
        },
        "personal_data": {"region": region, "counts": counts, "redacted": redacted},
    }
    return kept, report
