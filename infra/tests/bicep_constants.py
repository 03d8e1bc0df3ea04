"""Bicep's start-of-deployment rule, checked without the Bicep CLI.

Bicep rejects, before anything deploys, a for-expression (BCP178) or an if-condition (BCP177) whose value is known
only while deploying, in a variable's for-expression a body that is (BCP182), and such a value in a property a
deployed resource or a module must know at the start (BCP120: a resource's name, location, kind, sku, tags,
identity, zones, scope, parent...; a module's name and scope). The containers are those of
src/Bicep.Core/TypeSystem/DeployTimeConstantContainerVisitor.cs and DeployTimeConstantValidator.cs (existing
resources are not containers). The rule as Azure/bicep writes it, and as this module follows it:

- src/Bicep.Core/TypeSystem/DeployTimeConstantDirectViolationVisitor.cs: reading a property of a resource or module
  is a violation unless the property's type carries `ReadableAtDeployTime`; reading a whole resource or module, or
  calling a function flagged `RequiresInlining` (`reference()`, `list*()`), is one too.
- src/Bicep.Core/TypeSystem/Providers/Az/AzResourceTypeProvider.cs (SetBicepResourceProperties): the readable
  properties of a resource, `existing` or not, are `id`, `name`, `type`, `apiVersion`
  (ReadWriteDeployTimeConstantPropertyNames) and `scope`, `parent` (write-only, so reading them is a type error
  anyway). `location`, `kind`, `sku`, `tags`, `identity`, `zones`... must be deploy-time constants when written but
  are not readable (WriteOnlyDeployTimeConstantPropertyNames: Policy or the resource provider may change them), and
  `properties` never is. A module's only readable property is `name` (ModuleType: `outputs` is read-only).
- src/Bicep.Core/TypeSystem/Providers/ResourceTypeResolver.cs with src/Bicep.Core/Emit/InlineDependencyVisitor.cs:
  an `existing` resource is *inlined* (no `existing` resource in the ARM JSON) when its body (all but `dependsOn`,
  `parent`, `scope`) reads something known only while deploying, or its parent or scope is inlined. Its `id` is then
  not readable at the start, nor its `name` when the name itself reads such a value.

Variables are followed to what they read (DeployTimeConstantIndirectViolationVisitor). This module tokenizes Bicep
(strings with `${...}` interpolation, comments), finds every for-expression and if-condition and applies exactly
these rules: it neither allows what Bicep refuses nor refuses what Bicep allows, within the Bicep this repository
writes (one file at a time; no user-defined functions, no resource-typed parameters or outputs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

READABLE_RESOURCE_PROPERTIES = {"id", "name", "type", "apiVersion", "scope", "parent"}
READABLE_MODULE_PROPERTIES = {"name"}
# An inlined existing resource's identifier properties are readable only when their own expression is.
IDENTIFIER_PROPERTIES = ("name", "scope", "parent")
# Properties a deployed resource's body must give deploy-time constants (BCP120; AzResourceTypeProvider's
# WriteOnly- and ReadWriteDeployTimeConstantPropertyNames that can be written, plus scope and parent), and a
# module's (ModuleType: name, scope). Existing resources are exempt (DeployTimeConstantContainerVisitor skips them:
# Bicep inlines them instead).
RESOURCE_CONSTANT_PROPERTIES = (
    "name", "location", "kind", "subscriptionId", "resourceGroup", "managedBy", "extendedLocation", "zones", "plan",
    "sku", "identity", "managedByExtended", "tags", "asserts", "scope", "parent",
)
MODULE_CONSTANT_PROPERTIES = ("name", "scope")
# Where a whole resource is the expected value; only an inlined existing one is then a violation
# (DeployTimeConstantDirectViolationVisitor.FlagIfAccessingEntireResourceOrModule).
WHOLE_RESOURCE_PROPERTIES = ("scope", "parent")
PUNCT = ["::", "?.", "??", "==", "!=", "<=", ">=", "&&", "||", "=>"]


@dataclass
class Token:
    kind: str  # ident, str, num, punct, nl
    text: str
    line: int


@dataclass
class Resource:
    name: str
    existing: bool
    ancestor: str | None  # the enclosing resource of a nested declaration
    line: int
    module: bool = False
    properties: dict[str, list[Token]] = field(default_factory=dict)  # top-level body properties: value tokens


@dataclass
class Declarations:
    variables: dict[str, list[Token]] = field(default_factory=dict)
    params: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    details: dict[str, Resource] = field(default_factory=dict)
    module_details: dict[str, Resource] = field(default_factory=dict)
    # Properties of inlined existing resources that are not readable at the start: resource -> {id, name, ...}.
    unreadable: dict[str, set[str]] = field(default_factory=dict)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, line, n = 0, 1, len(text)

    def lex_string(i: int) -> int:
        """A single-quoted string from text[i] == "'": emits a str token, then its interpolations' tokens in
        parentheses so references inside '${...}' are analysed like any expression."""
        nonlocal line
        start_line = line
        j = i + 1
        inner: list[Token] = []
        while j < n and text[j] != "'":
            if text[j] == "\\":
                j += 2
                continue
            if text.startswith("${", j):
                depth, k = 1, j + 2
                while k < n and depth:
                    if text[k] == "{":
                        depth += 1
                    elif text[k] == "}":
                        depth -= 1
                    elif text[k] == "'":
                        # A string inside the interpolation: skip it whole.
                        k += 1
                        while k < n and text[k] != "'":
                            k += 2 if text[k] == "\\" else 1
                    k += 1
                sub = tokenize(text[j + 2 : k - 1])
                inner += [Token("punct", "(", line)] + [Token(t.kind, t.text, t.line + line - 1) for t in sub]
                inner += [Token("punct", ")", line)]
                j = k
                continue
            if text[j] == "\n":
                line += 1
            j += 1
        tokens.append(Token("str", text[i + 1 : j], start_line))
        tokens.extend(inner)
        return j + 1

    while i < n:
        c = text[i]
        if c == "\n":
            tokens.append(Token("nl", "\n", line))
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.index("*/", i + 2)
            line += text.count("\n", i, end)
            i = end + 2
        elif text.startswith("'''", i):
            end = text.index("'''", i + 3)
            tokens.append(Token("str", text[i + 3 : end], line))
            line += text.count("\n", i, end)
            i = end + 3
        elif c == "'":
            i = lex_string(i)
        elif c.isalpha() or c == "_":
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i:])
            tokens.append(Token("ident", m.group(0), line))
            i += len(m.group(0))
        elif c.isdigit():
            m = re.match(r"[0-9]+", text[i:])
            tokens.append(Token("num", m.group(0), line))
            i += len(m.group(0))
        else:
            for p in PUNCT:
                if text.startswith(p, i):
                    tokens.append(Token("punct", p, line))
                    i += len(p)
                    break
            else:
                tokens.append(Token("punct", c, line))
                i += 1
    return tokens


OPEN, CLOSE = {"(": ")", "[": "]", "{": "}"}, {")", "]", "}"}


def until_newline(tokens: list[Token], i: int) -> int:
    """Index of the first newline at bracket depth 0 from i (or len)."""
    depth = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "punct" and t.text in OPEN:
            depth += 1
        elif t.kind == "punct" and t.text in CLOSE:
            depth -= 1
        elif t.kind == "nl" and depth == 0:
            return i
        i += 1
    return i


def for_header(tokens: list[Token], k: int) -> tuple[int, int]:
    """tokens[k] is `for`: the index of its `in`, and of the `:` ending `for ... in <expr>:` (a `?:` inside the
    source is skipped; len(tokens) when there is no such `:`)."""
    m = k + 1
    while not (tokens[m].kind == "ident" and tokens[m].text == "in"):
        m += 1
    depth, ternaries, e = 0, 0, m + 1
    while e < len(tokens):
        x = tokens[e]
        if x.kind == "punct" and x.text in OPEN:
            depth += 1
        elif x.kind == "punct" and x.text in CLOSE:
            depth -= 1
        elif depth == 0 and x.text == "?":
            ternaries += 1
        elif depth == 0 and x.text == ":":
            if ternaries == 0:
                return m, e
            ternaries -= 1
        e += 1
    return m, e


def closing(tokens: list[Token], i: int) -> int:
    """tokens[i] opens a bracket: index of its matching close."""
    depth = 0
    for k in range(i, len(tokens)):
        if tokens[k].kind == "punct" and tokens[k].text in OPEN:
            depth += 1
        elif tokens[k].kind == "punct" and tokens[k].text in CLOSE:
            depth -= 1
            if depth == 0:
                return k
    return len(tokens) - 1


def parse_resource(tokens: list[Token], i: int, ancestor: str | None, decl: Declarations) -> int:
    """tokens[i] is `resource` or `module` at a line start: record it (and its nested resources); return the index
    after it."""
    name = tokens[i + 1].text
    end = until_newline(tokens, i)
    eq = next((k for k in range(i, end) if tokens[k].text == "="), None)
    existing = eq is not None and any(tokens[k].text == "existing" for k in range(i + 2, eq))
    res = Resource(name, existing, ancestor, tokens[i].line, module=tokens[i].text == "module")
    if res.module:
        decl.modules.add(name)
        decl.module_details[name] = res
    else:
        decl.resources.add(name)
        decl.details[name] = res
    body = next((k for k in range(eq + 1, end) if tokens[k].text == "{"), None) if eq is not None else None
    if body is None:
        return end
    close = closing(tokens, body)
    k = body + 1
    while k < close:
        t = tokens[k]
        if t.kind == "nl":
            k += 1
        elif t.kind == "ident" and t.text == "resource" and tokens[k - 1].kind == "nl":
            k = parse_resource(tokens, k, name, decl)
        elif (t.kind in ("ident", "str")) and k + 1 < close and tokens[k + 1].text == ":":
            stop = min(until_newline(tokens, k + 2), close)
            res.properties[t.text] = tokens[k + 2 : stop]
            k = stop
        else:
            k = until_newline(tokens, k) + 1
    return close + 1


def declarations(tokens: list[Token]) -> Declarations:
    decl = Declarations()
    i = 0
    while i < len(tokens):
        t = tokens[i]
        at_line_start = i == 0 or tokens[i - 1].kind == "nl"
        if at_line_start and t.kind == "ident" and t.text in {"var", "param", "resource", "module", "output"}:
            name = tokens[i + 1].text
            end = until_newline(tokens, i)
            if t.text == "var":
                eq = next(k for k in range(i, end) if tokens[k].text == "=")
                decl.variables[name] = tokens[eq + 1 : end]
            elif t.text == "param":
                decl.params.add(name)
            elif t.text == "resource":
                # Nested resources (`resource child 'x' existing = {...}` inside a body) are reached as a::child.
                end = parse_resource(tokens, i, None, decl) - 1
            elif t.text == "module":
                end = parse_resource(tokens, i, None, decl) - 1
            i = end
        i += 1
    decl.unreadable = inlined_existing(decl)
    return decl


def inlined_existing(decl: Declarations) -> dict[str, set[str]]:
    """The existing resources Bicep inlines, each with the properties it then cannot read at the start
    (InlineDependencyVisitor and ResourceTypeResolver.CreateExistingResourceBodyTypeOverrides)."""
    inlined: dict[str, set[str]] = {}
    changed = True
    while changed:
        changed = False
        for res in decl.details.values():
            if not res.existing or res.name in inlined:
                continue
            # While deciding, an inlined resource's id and name both count as runtime (InlineDependencyVisitor
            # visits the resource whose id or name is read and inlines when it is inlined).
            deciding = Declarations(
                variables=decl.variables,
                params=decl.params,
                resources=decl.resources,
                modules=decl.modules,
                details=decl.details,
                module_details=decl.module_details,
                unreadable={r: {"id", "name"} for r in inlined},
            )
            ancestors = []
            a = res.ancestor
            while a is not None:
                ancestors.append(a)
                a = decl.details[a].ancestor
            parent_tokens = res.properties.get("parent", [])
            if parent_tokens and parent_tokens[0].kind == "ident":
                ancestors.append(parent_tokens[0].text)
            scope_tokens = res.properties.get("scope", [])
            scoped_to = [t.text for t in scope_tokens if t.kind == "ident" and t.text in decl.resources]
            body_reads = [
                r
                for key, value in res.properties.items()
                if key not in ("dependsOn", "parent", "scope")
                for r in runtime_reads(value, deciding, [], set())
            ]
            if any(a in inlined for a in ancestors) or any(s in inlined for s in scoped_to) or body_reads:
                unreadable = {"id"}
                for prop in IDENTIFIER_PROPERTIES:
                    if prop in res.properties and runtime_reads(res.properties[prop], deciding, [], set()):
                        unreadable.add(prop)
                inlined[res.name] = unreadable
                changed = True
    return inlined


@dataclass
class Violation:
    file: str
    line: int
    container: str  # for-expression, if-condition, for-body of variable X
    reason: str
    chain: list[str]

    def __str__(self) -> str:
        via = f" (through variable {' -> '.join(self.chain)})" if self.chain else ""
        return f"{self.file}:{self.line}: {self.container} reads {self.reason}{via}: known only while deploying"


def is_object_key(tokens: list[Token], k: int) -> bool:
    nxt = tokens[k + 1] if k + 1 < len(tokens) else None
    prev = tokens[k - 1] if k > 0 else None
    return (
        nxt is not None
        and nxt.text == ":"
        and (prev is None or prev.kind == "nl" or (prev.kind == "punct" and prev.text in {"{", ","}))
    )


def accessor_after(tokens: list[Token], k: int) -> tuple[str | None, int]:
    """After a resource/module symbol at k: skip one [index] and any ::child, return the accessed property."""
    j = k + 1
    if j < len(tokens) and tokens[j].text == "[":
        depth = 0
        while j < len(tokens):
            if tokens[j].text in OPEN:
                depth += 1
            elif tokens[j].text in CLOSE:
                depth -= 1
                if depth == 0:
                    break
            j += 1
        j += 1
    while j + 1 < len(tokens) and tokens[j].text == "::":
        j += 2
    if j + 1 < len(tokens) and tokens[j].text in {".", "?."} and tokens[j + 1].kind == "ident":
        return tokens[j + 1].text, j + 1
    if j + 1 < len(tokens) and tokens[j].text == "[" and tokens[j + 1].kind == "str":
        return tokens[j + 1].text, j + 1
    return None, j


def runtime_reads(
    expr: list[Token], decl: Declarations, chain: list[str], seen: set[str], whole_ok: bool = False
) -> list[tuple[str, list[str]]]:
    """What in expr (following variables) is known only while deploying: (description, variable chain). whole_ok:
    expr is a scope or parent, where a whole resource is what is expected."""
    found: list[tuple[str, list[str]]] = []
    for k, t in enumerate(expr):
        if t.kind != "ident":
            continue
        prev = expr[k - 1] if k > 0 else None
        if prev is not None and prev.text in {".", "?.", "::"}:
            continue
        if is_object_key(expr, k):
            continue
        nxt = expr[k + 1] if k + 1 < len(expr) else None
        if nxt is not None and nxt.text == "(":
            if t.text == "reference" or t.text.startswith("list"):
                found.append((f"{t.text}()", chain))
            continue
        if t.text in decl.modules:
            prop, _ = accessor_after(expr, k)
            if prop not in READABLE_MODULE_PROPERTIES:
                found.append((f"module {t.text}" + (f".{prop}" if prop else " (whole)"), chain))
        elif t.text in decl.resources:
            prop, target = accessor_after(expr, k)
            # a::b::c reads c: the last nested name decides.
            name = t.text
            j = k + 1
            while j + 1 < len(expr) and expr[j].text == "::":
                name = expr[j + 1].text
                j += 2
            if prop is None and whole_ok:
                if name in decl.unreadable:
                    found.append((f"resource {name} (an existing resource Bicep inlines)", chain))
            elif prop not in READABLE_RESOURCE_PROPERTIES:
                found.append((f"resource {name}" + (f".{prop}" if prop else " (whole)"), chain))
            elif prop in decl.unreadable.get(name, set()):
                found.append((f"resource {name}.{prop} (an existing resource Bicep inlines)", chain))
        elif t.text in decl.variables and t.text not in seen:
            found += runtime_reads(decl.variables[t.text], decl, chain + [t.text], seen | {t.text})
    return found


def containers(tokens: list[Token], decl: Declarations):
    """Every for-expression source (and a variable for-body) and if-condition: (kind, line, tokens)."""
    var_spans = {}
    i = 0
    while i < len(tokens):
        if tokens[i].text == "var" and (i == 0 or tokens[i - 1].kind == "nl"):
            end = until_newline(tokens, i)
            var_spans[(i, end)] = tokens[i + 1].text
            i = end
        i += 1

    def enclosing_var(k: int) -> str | None:
        return next((name for (a, b), name in var_spans.items() if a <= k < b), None)

    for k, t in enumerate(tokens):
        if t.kind == "ident" and t.text == "for":
            j = k - 1
            while j >= 0 and tokens[j].kind == "nl":
                j -= 1
            if j < 0 or tokens[j].text != "[":
                continue
            m, e = for_header(tokens, k)
            yield "for-expression", t.line, tokens[m + 1 : e]
            var = enclosing_var(k)
            if var:
                depth, b = 1, e + 1
                while b < len(tokens) and depth:
                    if tokens[b].text in OPEN:
                        depth += 1
                    elif tokens[b].text in CLOSE:
                        depth -= 1
                    b += 1
                yield f"for-body of variable {var}", t.line, tokens[e + 1 : b - 1]
        elif t.kind == "ident" and t.text == "if" and k + 1 < len(tokens) and tokens[k + 1].text == "(":
            depth, e = 0, k + 1
            while e < len(tokens):
                if tokens[e].text in OPEN:
                    depth += 1
                elif tokens[e].text in CLOSE:
                    depth -= 1
                    if depth == 0:
                        break
                e += 1
            yield "if-condition", t.line, tokens[k + 2 : e]

    for res in list(decl.details.values()) + list(decl.module_details.values()):
        if res.existing:
            continue
        kind = "module" if res.module else "resource"
        for prop in MODULE_CONSTANT_PROPERTIES if res.module else RESOURCE_CONSTANT_PROPERTIES:
            if prop in res.properties:
                value = res.properties[prop]
                line = value[0].line if value else res.line
                yield f"{prop} of {kind} {res.name}", line, value


def violations(path: Path, name: str | None = None) -> list[Violation]:
    tokens = tokenize(path.read_text())
    decl = declarations(tokens)
    out = []
    for kind, line, expr in containers(tokens, decl):
        whole_ok = kind.split(" ", 1)[0] in WHOLE_RESOURCE_PROPERTIES
        for reason, chain in runtime_reads(expr, decl, [], set(), whole_ok):
            out.append(Violation(name or path.name, line, kind, reason, chain))
    return out
