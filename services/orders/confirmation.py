"""Confirmation numbers customers read out on the phone: SB-XXXX-XXXX in Crockford base32.

Crockford's alphabet has no I, L, O or U, so nothing can be misread as 1, 0 or a rude word.
8 random symbols give 32^8 (about 10^12) numbers; the database's unique constraint catches
the rare collision and the caller draws again.
"""
from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PATTERN = re.compile(rf"^SB-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")


def new_confirmation_number(randbelow=secrets.randbelow) -> str:
    symbols = "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(8))
    return f"SB-{symbols[:4]}-{symbols[4:]}"

