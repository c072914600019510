"""Characters as QEMU key codes (qcodes), for typing on a machine's virtual keyboard."""
from __future__ import annotations

_NAMED = {
    "\n": "ret", " ": "spc", "\t": "tab", "\b": "backspace",
    "-": "minus", "=": "equal", "[": "bracket_left", "]": "bracket_right", "\\": "backslash",
    ";": "semicolon", "'": "apostrophe", "`": "grave_accent", ",": "comma", ".": "dot", "/": "slash",
}
# Shifted characters: the unshifted key they share on a US keyboard.
_SHIFTED = dict(zip('!@#$%^&*()_+{}|:"~<>?', "1234567890-=[]\\;'`,./"))


def qcodes(key: str) -> list[str]:
    """One typed character (`"A"`, `"\\n"`, `"?"`) or a combination in QEMU's names
    (`"ctrl-alt-delete"`, `"alt-f2"`) as the qcodes to press together."""
    if len(key) != 1:
        return key.split("-")
    if key.isalpha() and key.isascii():
        return ["shift", key.lower()] if key.isupper() else [key]
    if key.isdigit():
        return [key]
    if key in _SHIFTED:
        return ["shift", *qcodes(_SHIFTED[key])]
    if key in _NAMED:
        return [_NAMED[key]]
    raise ValueError(f"send_key: no key for {key!r} on a US keyboard")
