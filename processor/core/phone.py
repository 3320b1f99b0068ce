"""Phone numbers to E.164, without guessing countries.

Rules (each one seen in real CTRs or Connect documentation):

* ``+`` followed by 7..15 digits is E.164 as it is (formatting characters removed).
* A *leading space* before digits means a ``+`` was lost to URL decoding
  (``" 19182690528"`` is ``+19182690528``).
* ``00`` followed by digits is the international prefix: ``0044...`` is ``+44...``.
* ``sip:+1555...@host`` / ``tel:+1555...`` carry a number: it is extracted.
* Anything else (national numbers without a country, ``anonymous``, SIP user names,
  e-mail addresses) has no E.164 form: ``None``. The raw address is always kept.

Country-level validity is not checked on purpose: QM imports what Connect recorded, and
test or premium-rate numbers in real CTRs (``+1900...``) are not valid by libphonenumber.
"""

from __future__ import annotations

import re

_FORMATTING = re.compile(r"[\s().\-/]")
_URI = re.compile(r"^(?:sip|sips|tel):([^@;]+)", re.IGNORECASE)
_DIGITS = re.compile(r"^\d{7,15}$")


def to_e164(address: str | None) -> str | None:
    if address is None:
        return None
    # Already E.164 ("+" and 7..15 ASCII digits, the first not 0): every rule below keeps it.
    if 8 <= len(address) <= 16 and address[0] == "+" and address[1] != "0":
        digits = address[1:]
        if digits.isascii() and digits.isdigit():
            return address
    text = address
    uri = _URI.match(text.strip())
    if uri:
        text = uri.group(1)
    lost_plus = bool(text) and text[0] == " " and text.strip()[:1].isdigit()
    text = text.strip()
    if text.startswith("+"):
        digits = _FORMATTING.sub("", text[1:])
    elif lost_plus:
        digits = _FORMATTING.sub("", text)
    elif text.startswith("00"):
        digits = _FORMATTING.sub("", text)[2:]
    else:
        return None
    if not _DIGITS.match(digits) or digits.startswith("0"):
        return None
    return "+" + digits
