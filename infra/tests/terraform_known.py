"""Terraform's plan-time rule for `for_each` and `count`, checked without Terraform.

Terraform refuses a resource, data or module block whose `count`, or whose `for_each` keys (a set's elements, a
map's keys), are unknown when it plans: "Invalid for_each argument ... The "for_each" map includes keys derived from
resource attributes that cannot be determined until apply" (hashicorp/terraform internal/terraform/eval_for_each.go;
"Invalid count argument" for count). A map's *values* may be unknown. Dynamic blocks are not concerned: an unknown
collection there only makes the block unknown.

What this module treats as unknown at plan time: an attribute of a managed resource declared in the configuration
(`azurerm_x.name...`, `terraform_data.package...`). Input variables, locals built from them, literals and data
sources are known (a data source can be read while planning unless it depends on something unknown, which this
configuration avoids). Locals are followed.

What decides the keys of an expression: everything but the values of its maps. So the values after `=>` in
`{ for ... : key => value }` and after `=` in an object literal are dropped, except that a key or condition reading a
comprehension's value variable (`for k, v in COLL : v.id => ...`) makes the whole of COLL decide (its values become
keys). Iterating a resource's instances (`for k, v in azurerm_x.y : k => ...`) is known: their keys are that
resource's own for_each keys.

Stricter than Terraform in two places, on purpose: a configured attribute Terraform would know at plan time (the
`name` given in a resource's block) still counts as unknown here, and so does a resource's instance count
(`length(azurerm_x.y)`); rewriting such a key costs little, a failed plan of a first deployment costs more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import hcl2

KNOWN_ROOTS = {"var", "local", "data", "each", "count", "path", "terraform", "self", "module"}


@dataclass
class Config:
    locals: dict[str, str]
    resources: set[str]  # "type.name" of managed resources
    blocks: list[tuple[str, str, str, str]]  # (file, block address, argument, expression)


def as_text(value) -> str:
    """hcl2 renders expressions as "${...}" strings and literals as Python values: text either way."""
    if isinstance(value, str):
        return value[2:-1] if value.startswith("${") and value.endswith("}") else repr(value)
    if isinstance(value, dict):
        # A literal object: its keys are literals (known); only its values could read anything.
        return "{" + ", ".join(f"{k!r} = {as_text(v)}" for k, v in value.items() if not str(k).startswith("__")) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(as_text(v) for v in value) + "]"
    return repr(value)


def load(root: Path) -> Config:
    cfg = Config({}, set(), [])
    for path in sorted(root.glob("*.tf")):
        with path.open() as f:
            doc = hcl2.load(f)
        for block in doc.get("locals", []):
            for name, value in block.items():
                if not name.startswith("__"):
                    cfg.locals[name] = as_text(value)
        for kind in ("resource", "data", "module"):
            for block in doc.get(kind, []):
                if kind == "module":
                    items = [("module", name, body) for name, body in block.items()]
                else:
                    items = [(rtype, name, body) for rtype, named in block.items() for name, body in named.items()]
                for rtype, name, body in items:
                    address = f"{rtype}.{name}" if kind != "data" else f"data.{rtype}.{name}"
                    if kind == "resource":
                        cfg.resources.add(f"{rtype}.{name}")
                    for arg in ("for_each", "count"):
                        if arg in body:
                            value = body[arg][0] if isinstance(body[arg], list) and len(body[arg]) == 1 else body[arg]
                            cfg.blocks.append((path.name, address, arg, as_text(value)))
    return cfg


OPEN = {"(": ")", "[": "]", "{": "}"}


def skip_string(s: str, i: int) -> int:
    """s[i] == '"': index after the closing quote, stepping over ${...} (which may hold strings)."""
    j = i + 1
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        if s.startswith("${", j):
            j = match_close(s, j + 1)
            continue
        if s[j] == '"':
            return j + 1
        j += 1
    return j


def match_close(s: str, i: int) -> int:
    """s[i] opens a bracket: index after its matching close."""
    depth, j = 0, i
    while j < len(s):
        c = s[j]
        if c == '"':
            j = skip_string(s, j)
            continue
        if c in OPEN:
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return j


def split_top(s: str, seps: tuple[str, ...]) -> list[tuple[str, str]]:
    """Split s at depth 0 on the first of seps found each time: [(text, separator that ended it)]."""
    out, depth, start, j = [], 0, 0, 0
    while j < len(s):
        c = s[j]
        if c == '"':
            j = skip_string(s, j)
            continue
        if c in OPEN:
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for sep in seps:
                if s.startswith(sep, j) and not (sep == "=" and (s.startswith(("==", "=>"), j) or s[j - 1] in "!<>=")):
                    if sep == "if" and (j > 0 and (s[j - 1].isalnum() or s[j - 1] == "_")):
                        continue
                    if sep == "if" and not s[j + 2 : j + 3].isspace():
                        continue
                    out.append((s[start:j], sep))
                    start = j + len(sep)
                    j = start
                    break
            else:
                j += 1
                continue
            continue
        j += 1
    out.append((s[start:], ""))
    return out


@dataclass
class Part:
    text: str
    mode: str  # "keys": only what decides keys; "full": every value counts


def deciding_parts(expr: str) -> tuple[str, list[Part]]:
    """The text of expr without map values (what stays decides keys), plus sub-expressions to check in full."""
    out, extra, j = [], [], 0
    while j < len(expr):
        c = expr[j]
        if c == '"':
            k = skip_string(expr, j)
            out.append(expr[j:k])
            j = k
            continue
        if c == "{":
            end = match_close(expr, j)
            inner = expr[j + 1 : end - 1]
            m = re.match(r"\s*for\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\s+", inner)
            if m:
                rest = inner[m.end() :]
                coll, _ = split_top(rest, (":",))[0]
                body = rest[len(coll) + 1 :]
                key_part, _ = split_top(body, ("=>",))[0]
                after = body[len(key_part) + 2 :]
                cond = ""
                pieces = split_top(after, ("if",))
                if len(pieces) > 1:
                    cond = pieces[1][0]
                value_var = m.group(2) or m.group(1)
                reads_value = re.search(rf"(?<![\w.]){value_var}(?![\w])", key_part + " " + cond) is not None
                # `for k, v in azurerm_x.y`: the keys of a resource's instances are its own for_each keys, known
                # at plan time; only reading v in the key brings its (unknown) attributes in.
                if not re.fullmatch(r"\s*[a-z][a-z0-9]*_[a-z0-9_]*\.[A-Za-z_][\w-]*\s*", coll):
                    sub, more = deciding_parts(coll)
                    out.append(" " + sub + " ")
                    extra += more
                if reads_value:
                    extra.append(Part(coll, "full"))
                for piece in (key_part, cond):
                    sub, more = deciding_parts(piece)
                    out.append(" " + sub + " ")
                    extra += more
                    # locals and resources in a key are whole values that become keys
                    extra.append(Part(piece, "full"))
            else:
                # An object literal: keep its keys, drop its values.
                for item, _ in split_top(inner, (",", "\n")):
                    key, sep = split_top(item, ("=", ":"))[0]
                    if key.strip().startswith("("):
                        extra.append(Part(key, "full"))
                    out.append(" " + key + " ")
            j = end
            continue
        out.append(c)
        j += 1
    return "".join(out), extra


def references(text: str, cfg: Config) -> tuple[list[str], list[str]]:
    """Managed resources and locals text refers to."""
    resources = sorted(
        {m.group(1) for m in re.finditer(r"(?<![\w.])([a-z][a-z0-9]*_[a-z0-9_]*\.[A-Za-z_][\w-]*)", text)}
        & cfg.resources
    )
    locals_ = sorted({m.group(1) for m in re.finditer(r"(?<![\w.])local\.([A-Za-z_]\w*)", text)} & set(cfg.locals))
    return resources, locals_


def unknown_reads(part: Part, cfg: Config, chain: list[str], seen: set[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    if part.mode == "full":
        text, extra = part.text, []
    else:
        text, extra = deciding_parts(part.text)
    resources, locals_ = references(text, cfg)
    found = [(r, chain) for r in resources]
    for name in locals_:
        if (name, part.mode) not in seen:
            found += unknown_reads(Part(cfg.locals[name], part.mode), cfg, chain + [f"local.{name}"], seen | {(name, part.mode)})
    for sub in extra:
        found += unknown_reads(sub, cfg, chain, seen)
    return found


def violations(root: Path) -> list[str]:
    cfg = load(root)
    out = []
    for file, address, arg, expr in cfg.blocks:
        mode = "full" if arg == "count" else "keys"
        seen_msgs = set()
        for resource, chain in unknown_reads(Part(expr, mode), cfg, [], set()):
            via = f" (through {' -> '.join(chain)})" if chain else ""
            what = "count" if arg == "count" else "for_each keys"
            msg = f"{file}: {address}: {what} read {resource}{via}: unknown until apply, refused at plan time"
            if msg not in seen_msgs:
                seen_msgs.add(msg)
                out.append(msg)
    return out


def checked_blocks(root: Path) -> list[tuple[str, str, str, str]]:
    return load(root).blocks
