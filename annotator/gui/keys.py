"""Dear PyGui key codes <-> the key names used in shortcuts ("z", "enter", "f1", "left", ...)."""
from __future__ import annotations

import dearpygui.dearpygui as dpg

_ALIASES = {
    "return": "enter", "numpadenter": "enter", "spacebar": "space", "back": "backspace",
    "next": "pagedown", "prior": "pageup", "plus": "equal", "add": "equal", "subtract": "minus",
    "open_brace": "[", "close_brace": "]", "period": ".", "comma": ",", "slash": "/", "backslash": "\\",
}
_MOD_KEYS = {"lcontrol", "rcontrol", "lshift", "rshift", "lalt", "ralt", "lwin", "rwin",
             "modctrl", "modshift", "modalt", "modsuper"}


def _table() -> dict[int, str]:
    out: dict[int, str] = {}
    for attr in dir(dpg):
        if not attr.startswith("mvKey_"):
            continue
        name = attr[6:].lower()
        if name in _MOD_KEYS or name in ("none", "moddisabled"):
            continue
        name = _ALIASES.get(name, name)
        code = getattr(dpg, attr)
        # the first spelling wins, except that an alias beats a raw name
        if code not in out or name in _ALIASES.values():
            out[code] = name
    return out


KEY_NAMES = _table()


def key_name(code: int) -> str | None:
    return KEY_NAMES.get(code)


def modifiers() -> set[str]:
    d = dpg.is_key_down
    mods = set()
    if d(dpg.mvKey_LControl) or d(dpg.mvKey_RControl) or d(dpg.mvKey_ModCtrl):
        mods.add("ctrl")
    if d(dpg.mvKey_LShift) or d(dpg.mvKey_RShift) or d(dpg.mvKey_ModShift):
        mods.add("shift")
    if d(dpg.mvKey_LAlt) or d(dpg.mvKey_RAlt) or d(dpg.mvKey_ModAlt):
        mods.add("alt")
    return mods


def is_modifier(code: int) -> bool:
    return code in {getattr(dpg, "mvKey_" + n) for n in
                    ("LControl", "RControl", "LShift", "RShift", "LAlt", "RAlt", "ModCtrl", "ModShift", "ModAlt",
                     "LWin", "RWin", "ModSuper")}
