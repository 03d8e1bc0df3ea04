"""Every resource the Bicep declares uses a resource type and API version Azure's published Bicep types contain,
and writes only keys that version's schema has. The facts are bicep_types_known.py's snapshot of
Azure/bicep-types-az (the types `bicep build` validates against; that module says where each one comes from and
how to refresh it). Nothing here can run `bicep build`, and even `bicep build` only warns on the two mistakes
this check is for:

- an API version bicep-types-az does not publish (BCP081: "does not have types available", and the deployment is
  left to fail in Azure Resource Manager);
- a key under `properties:` the schema does not have, or that it marks read-only (BCP037/BCP073, warnings inside
  `properties`; the resource provider then ignores the key or refuses the request). Keys at the resource level
  (`kind`, `sku`, `identity`...) are mostly errors in Bicep already (its resource body is validated strictly);
  they are checked the same way, against the same snapshot.

Checked: every `resource <symbol> '<Type>@<version>'` in infra/bicep, nested child declarations included (their
type and version follow from the parent's); for a deployed (non-`existing`) resource, its resource-level keys and
the keys written directly under `properties:` (of an object literal, of both branches of a `?:` and of every
object literal `union()` merges; nested objects are not checked); for an `existing` one, that it writes only what
Bicep lets an existing resource write (name, scope, parent). Each check is proven on a copy with the rule broken.
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import bicep_constants
import bicep_types_known as known
from bicep_constants import Token, closing, until_newline

INFRA = Path(__file__).resolve().parent.parent

# Keys Bicep adds to every resource body (Azure/bicep src/Bicep.Core/TypeSystem/Providers/Az/AzResourceTypeProvider.cs,
# SetBicepResourceProperties): `dependsOn` on a deployed resource, `scope` on one that can be deployed as an
# extension resource (ScopeHelper.TryCreateNonExistingResourceScopeProperty; stricter here: the tenant-scope case
# it also allows is not used), `parent` on a child type declared outside its parent. An existing resource may
# write only `name`, `scope` and `parent` (WritableExistingResourceProperties; everything else becomes read-only).
EXISTING_WRITABLE = {"name", "scope", "parent"}


@dataclass
class Declaration:
    file: str
    line: int
    symbol: str
    type: str  # fully qualified, a nested child's included: Microsoft.Storage/storageAccounts/blobServices
    version: str
    existing: bool
    nested: bool  # declared inside its parent's body
    keys: dict[str, tuple[int, list[Token]]] = field(default_factory=dict)  # resource-level key -> (line, value)

    @property
    def type_api(self) -> str:
        return f"{self.type}@{self.version}"

    def where(self) -> str:
        return f"{self.file}:{self.line}: resource {self.symbol} '{self.type_api}'"


def skip_nl(tokens: list[Token], i: int) -> int:
    while i < len(tokens) and tokens[i].kind == "nl":
        i += 1
    return i


def for_header_end(tokens: list[Token], i: int) -> int:
    """tokens[i] is `for`: index of the `:` ending `for ... in <expr>:` (bicep_constants.for_header)."""
    end = bicep_constants.for_header(tokens, i)[1]
    if end == len(tokens):
        raise ValueError(f"line {tokens[i].line}: `for` without its `:`")
    return end


def body_start(tokens: list[Token], i: int) -> tuple[int, int]:
    """tokens[i] follows a declaration's `=`: the index of the `{` opening its body, through `[for ...: ` and
    `if (...)` (as Bicep writes them: `if (c) {`, `[for x in xs: {`, `[for x in xs: if (c) {`), and the index
    after the whole value (past a loop's `]`)."""
    i = skip_nl(tokens, i)
    loop = None
    if tokens[i].text == "[":
        loop = i
        i = skip_nl(tokens, i + 1)
        if tokens[i].text != "for":
            raise ValueError(f"line {tokens[i].line}: `[` without `for` in a resource declaration")
        i = skip_nl(tokens, for_header_end(tokens, i) + 1)
    if tokens[i].kind == "ident" and tokens[i].text == "if":
        paren = skip_nl(tokens, i + 1)
        i = skip_nl(tokens, closing(tokens, paren) + 1)
    if tokens[i].text != "{":
        raise ValueError(f"line {tokens[i].line}: no body after a resource declaration's `=`")
    return i, (closing(tokens, loop) if loop is not None else closing(tokens, i)) + 1


def parse_resource(
    tokens: list[Token], i: int, file: str, parent: Declaration | None, out: list[Declaration]
) -> int:
    """tokens[i] is `resource` at a line start: record it and its nested declarations; return the index after it."""
    symbol, type_token = tokens[i + 1], tokens[i + 2]
    if type_token.kind != "str" or (i + 3 < len(tokens) and tokens[i + 3].text == "("):
        raise ValueError(f"{file}:{tokens[i].line}: resource {symbol.text}: the type is not a plain string")
    type_name, _, version = type_token.text.partition("@")
    if parent is not None:
        # A nested child's type is relative to its parent's, and without a version it takes the parent's.
        type_name = f"{parent.type}/{type_name}"
        version = version or parent.version
    j = i + 3
    existing = tokens[j].kind == "ident" and tokens[j].text == "existing"
    j += existing
    if tokens[j].text != "=":
        raise ValueError(f"{file}:{tokens[i].line}: resource {symbol.text}: no `=` after the type")
    decl = Declaration(file, tokens[i].line, symbol.text, type_name, version, existing, parent is not None)
    out.append(decl)
    body, end = body_start(tokens, j + 1)
    close = closing(tokens, body)
    k = body + 1
    while k < close:
        t = tokens[k]
        if t.kind == "nl":
            k += 1
        elif t.kind == "ident" and t.text == "resource" and tokens[k - 1].kind == "nl" and tokens[k + 2].kind == "str":
            k = parse_resource(tokens, k, file, decl, out)
        elif t.kind in ("ident", "str") and tokens[k + 1].text == ":":
            stop = min(until_newline(tokens, k + 2), close)
            decl.keys[t.text] = (t.line, tokens[k + 2 : stop])
            k = stop
        else:
            k = until_newline(tokens, k) + 1
    return end


def declarations(path: Path, name: str | None = None) -> list[Declaration]:
    """Every resource declaration of a Bicep file, in order (nested ones after their parent)."""
    tokens = bicep_constants.tokenize(path.read_text())
    out: list[Declaration] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        at_line_start = i == 0 or tokens[i - 1].kind == "nl"
        if at_line_start and t.kind == "ident" and t.text == "resource" and tokens[i + 2].kind == "str":
            i = parse_resource(tokens, i, name or path.name, None, out)
        elif t.kind == "nl":
            i += 1
        else:
            # var, param, output, module, decorators...: skip the whole statement, bodies included.
            i = until_newline(tokens, i) + 1
    return out


def all_declarations(bicep_root: Path) -> list[Declaration]:
    return [
        d for p in sorted(bicep_root.rglob("*.bicep")) for d in declarations(p, str(p.relative_to(bicep_root)))
    ]


def object_keys(expr: list[Token]) -> list[Token] | None:
    """The keys written directly in an expression's object literals: the literal itself, both branches of a `?:`,
    every argument of union(), through parentheses. None when the value is none of those (a variable, a function
    call...), so nothing is written here to check."""
    a, b = 0, len(expr)
    while a < b and expr[a].kind == "nl":
        a += 1
    while b > a and expr[b - 1].kind == "nl":
        b -= 1
    expr = expr[a:b]
    if not expr:
        return None
    if expr[0].text in ("{", "(") and expr[0].kind == "punct" and closing(expr, 0) == len(expr) - 1:
        if expr[0].text == "(":
            return object_keys(expr[1:-1])
        keys, depth = [], 0
        for k, t in enumerate(expr):
            if t.kind == "punct" and t.text in bicep_constants.OPEN:
                depth += 1
            elif t.kind == "punct" and t.text in bicep_constants.CLOSE:
                depth -= 1
            elif (
                depth == 1
                and t.kind in ("ident", "str")
                and k + 1 < len(expr)
                and expr[k + 1].text == ":"
                and expr[k - 1].text in ("{", "\n", ",")
            ):
                keys.append(t)
        return keys
    # cond ? a : b, split at the top level (a nested ?: in a branch is handled by the recursion).
    depth, question = 0, None
    for k, t in enumerate(expr):
        if t.kind == "punct" and t.text in bicep_constants.OPEN:
            depth += 1
        elif t.kind == "punct" and t.text in bicep_constants.CLOSE:
            depth -= 1
        elif depth == 0 and t.text == "?" and question is None:
            question = k
    if question is not None:
        depth, ternaries = 0, 0
        for k in range(question + 1, len(expr)):
            t = expr[k]
            if t.kind == "punct" and t.text in bicep_constants.OPEN:
                depth += 1
            elif t.kind == "punct" and t.text in bicep_constants.CLOSE:
                depth -= 1
            elif depth == 0 and t.text == "?":
                ternaries += 1
            elif depth == 0 and t.text == ":":
                if ternaries == 0:
                    branches = [object_keys(expr[question + 1 : k]), object_keys(expr[k + 1 :])]
                    found = [key for keys in branches if keys for key in keys]
                    return found if any(keys is not None for keys in branches) else None
                ternaries -= 1
        return None
    if expr[0].kind == "ident" and expr[0].text == "union" and len(expr) > 1 and expr[1].text == "(":
        if closing(expr, 1) != len(expr) - 1:
            return None
        args, depth, start = [], 0, 2
        for k in range(2, len(expr) - 1):
            t = expr[k]
            if t.kind == "punct" and t.text in bicep_constants.OPEN:
                depth += 1
            elif t.kind == "punct" and t.text in bicep_constants.CLOSE:
                depth -= 1
            elif depth == 0 and t.text == ",":
                args.append(expr[start:k])
                start = k + 1
        args.append(expr[start : len(expr) - 1])
        parts = [object_keys(arg) for arg in args]
        return [key for keys in parts if keys for key in keys] if any(p is not None for p in parts) else None
    return None


def near(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def version_problems(decls: list[Declaration]) -> list[str]:
    problems = []
    for d in decls:
        if known.schema(d.type, d.version) is not None:
            continue
        versions = known.published_versions(d.type)
        if versions is None:
            problems.append(
                f"{d.where()}: type {d.type} is not in the snapshot of bicep-types-az at any version (a misspelled "
                f"type, or one the snapshot does not record yet: refresh it, see bicep_types_known.py)"
            )
        elif d.version not in versions:
            below, above = known.nearest_versions(d.type, d.version)
            problems.append(
                f"{d.where()}: {d.type} has no API version {d.version} in bicep-types-az {known.COMMIT[:12]}; "
                f"nearest published: {', '.join(below) or '(none older)'} < {d.version} < "
                f"{', '.join(above) or '(none newer)'}"
            )
        else:
            problems.append(
                f"{d.where()}: {d.type_api} is published but its schema is not in the snapshot: refresh it (see "
                f"bicep_types_known.py)"
            )
    return problems


def element_of(d: Declaration, schema: dict) -> tuple[dict | None, str | None]:
    """A discriminated type's element for this declaration (by its literal discriminator value)."""
    key = schema["discriminator"]
    value = d.keys.get(key, (d.line, []))[1]
    value = [t for t in value if t.kind != "nl"]
    if len(value) != 1 or value[0].kind != "str":
        values = ", ".join(schema["values"])
        return None, f"{d.where()}: `{key}` must be a plain string: it selects the schema ({values})"
    name = value[0].text
    if name in schema["elements"]:
        return schema["elements"][name], None
    if name in schema["values"]:
        return None, f"{d.where()}: {key} '{name}' is an element of the type the snapshot does not record: refresh it"
    return None, f"{d.where()}: {key} '{name}' is not one of the type's: {', '.join(schema['values'])}"


def key_problems(decls: list[Declaration]) -> list[str]:
    problems = []
    for d in decls:
        schema = known.schema(d.type, d.version)
        if schema is None:
            continue  # version_problems reports it
        if d.existing:
            for key, (line, _) in d.keys.items():
                if key not in EXISTING_WRITABLE:
                    problems.append(
                        f"{d.file}:{line}: existing resource {d.symbol} writes `{key}`: an existing resource may "
                        f"write only {', '.join(sorted(EXISTING_WRITABLE))}"
                    )
            continue
        body = schema
        if "discriminator" in schema:
            body, problem = element_of(d, schema)
            if problem:
                problems.append(problem)
                continue
        allowed = set(body["resource"]) | {"dependsOn"}
        if schema["extension"]:
            allowed.add("scope")
        if d.type.count("/") > 1 and not d.nested:
            allowed.add("parent")
        for key, (line, _) in d.keys.items():
            if key not in allowed:
                problems.append(
                    f"{d.file}:{line}: resource {d.symbol} '{d.type_api}': `{key}` is not a writable key of the "
                    f"resource{near(key, allowed)}"
                )
        if "properties" not in d.keys or "properties" not in allowed or body["properties"] == known.ANY:
            continue
        for key in object_keys(d.keys["properties"][1]) or []:
            if key.text not in body["properties"]:
                problems.append(
                    f"{d.file}:{key.line}: resource {d.symbol} '{d.type_api}': properties.{key.text} is not a "
                    f"writable property at this version{near(key.text, body['properties'])}"
                )
    return problems


def problems(bicep_root: Path) -> list[str]:
    decls = all_declarations(bicep_root)
    return version_problems(decls) + key_problems(decls)


@pytest.fixture()
def infra_copy(tmp_path: Path) -> Path:
    shutil.copytree(INFRA / "bicep", tmp_path / "bicep")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


# ---------------------------------------------------------------------------------------------------------------
# The tree


def test_every_declared_type_and_api_version_is_published():
    assert version_problems(all_declarations(INFRA / "bicep")) == []


def test_every_written_key_is_in_the_schema_of_that_version():
    assert key_problems(all_declarations(INFRA / "bicep")) == []


def test_the_snapshot_holds_exactly_the_types_the_bicep_uses():
    # Stale entries would make the snapshot claim more than it was checked for.
    used = {d.type_api.lower() for d in all_declarations(INFRA / "bicep")}
    assert {t.lower() for t in known.TYPES} == used
    assert {t.lower() for t in known.PUBLISHED_VERSIONS} == {u.split("@")[0] for u in used}


def test_the_analysis_sees_every_declaration_and_property():
    # A parser that finds nothing would pass vacuously: count what it checks.
    decls = all_declarations(INFRA / "bicep")
    by_symbol = {(d.file, d.symbol): d for d in decls}
    assert len(decls) >= 70, len(decls)
    # nested (type and version from the parent), for + if bodies, if bodies
    assert by_symbol[("modules/handler.bicep", "locks")].type_api == (
        "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01"
    )

    def written(file: str, symbol: str) -> list[str]:
        return [k.text for k in object_keys(by_symbol[(file, symbol)].keys["properties"][1]) or []]

    assert "assignableScopes" in written("main.bicep", "customRoles")  # = [for ...: if (...) {
    assert "principalType" in written("modules/app-grants.bicep", "webAppAssignments")  # = [for ...: if (...) {
    assert "groupShortName" in written("main.bicep", "actionGroup")  # = if (...) {
    assert "allow" in written("modules/handler.bicep", "scmBasicAuth")
    # both branches of the plan's `?:`
    plan = written("modules/handler.bicep", "plan")
    assert plan.count("reserved") == 2 and "maximumElasticWorkerCount" in plan, plan
    checked = sum(
        len(object_keys(d.keys["properties"][1]) or [])
        for d in decls
        if not d.existing and "properties" in d.keys
    )
    assert checked >= 150, checked


# ---------------------------------------------------------------------------------------------------------------
# Each rule broken on a copy


def test_detects_an_api_version_that_does_not_exist(infra_copy):
    edit(
        infra_copy / "bicep" / "main.bicep",
        "resource customRoles 'Microsoft.Authorization/roleDefinitions@2022-04-01'",
        "resource customRoles 'Microsoft.Authorization/roleDefinitions@2022-04-02'",
    )
    line = next(
        n for n, text in enumerate((infra_copy / "bicep" / "main.bicep").read_text().splitlines(), 1)
        if text.startswith("resource customRoles ")
    )
    found = problems(infra_copy / "bicep")
    assert len(found) == 1, found
    assert found[0].startswith(
        f"main.bicep:{line}: resource customRoles 'Microsoft.Authorization/roleDefinitions@2022-04-02'"
    ), found
    assert "no API version 2022-04-02" in found[0] and "2022-04-01 < 2022-04-02 <" in found[0], found


def test_detects_a_misspelled_property(infra_copy):
    edit(
        infra_copy / "bicep" / "main.bicep",
        "    assignableScopes: azureKeyResourceGroups",
        "    assignableScope: azureKeyResourceGroups",
    )
    found = problems(infra_copy / "bicep")
    assert len(found) == 1 and "properties.assignableScope is not" in found[0], found
    assert found[0].startswith("main.bicep:") and "did you mean assignableScopes?" in found[0], found


def test_detects_a_misspelled_property_in_one_branch_of_a_condition(infra_copy):
    edit(
        infra_copy / "bicep" / "modules" / "handler.bicep",
        "    maximumElasticWorkerCount: 20",
        "    maximumElasticWorkers: 20",
    )
    found = problems(infra_copy / "bicep")
    assert len(found) == 1 and "resource plan 'Microsoft.Web/serverfarms@2024-04-01'" in found[0], found
    assert "properties.maximumElasticWorkers" in found[0], found


def test_detects_a_property_inside_a_conditional_loop_body(infra_copy):
    # `= [for g in grants: if (isWebApp) {`
    text = (infra_copy / "bicep" / "modules" / "app-grants.bicep").read_text()
    start = text.index("resource webAppAssignments")
    (infra_copy / "bicep" / "modules" / "app-grants.bicep").write_text(
        text[:start] + text[start:].replace("principalType:", "principalKind:", 1)
    )
    found = problems(infra_copy / "bicep")
    assert len(found) == 1 and "webAppAssignments" in found[0] and "principalKind" in found[0], found


def test_detects_a_read_only_property_written(infra_copy):
    # A user-assigned identity's properties (clientId, principalId) are all read-only.
    edit(
        infra_copy / "bicep" / "main.bicep",
        "  name: '${namePrefix}-eventgrid-${suffix}'\n  location: location\n  tags: tags\n}",
        "  name: '${namePrefix}-eventgrid-${suffix}'\n  location: location\n  tags: tags\n  properties: {}\n}",
    )
    found = problems(infra_copy / "bicep")
    assert len(found) == 1 and "resource topicIdentity" in found[0] and "`properties` is not a writable" in found[0]


def test_detects_a_misspelled_resource_level_key(infra_copy):
    edit(
        infra_copy / "bicep" / "modules" / "handler.bicep",
        "  kind: 'functionapp,linux'\n  identity: {",
        "  kind: 'functionapp,linux'\n  identities: {",
    )
    found = problems(infra_copy / "bicep")
    assert len(found) == 1 and "`identities` is not a writable key" in found[0], found
    assert "did you mean identity?" in found[0], found


def test_detects_a_wrong_nested_child_type(infra_copy):
    # The nested declaration's full type is its parent's plus its own.
    edit(
        infra_copy / "bicep" / "modules" / "handler.bicep",
        "  resource blob 'blobServices' existing = {",
        "  resource blob 'blobService' existing = {",
    )
    found = problems(infra_copy / "bicep")
    assert any(
        "resource blob 'Microsoft.Storage/storageAccounts/blobService@2023-05-01'" in p and "at any version" in p
        for p in found
    ), found
    nested = "resource locks 'Microsoft.Storage/storageAccounts/blobService/containers@2023-05-01'"
    assert any(nested in p for p in found), found


def test_detects_a_discriminator_value_the_type_does_not_have(infra_copy):
    edit(infra_copy / "bicep" / "modules" / "handler.bicep", "  name: 'ftp'\n", "  name: 'ftps'\n")
    found = problems(infra_copy / "bicep")
    assert len(found) == 1 and "name 'ftps' is not one of the type's: ftp, scm" in found[0], found


def test_detects_an_existing_resource_writing_more_than_its_name(infra_copy):
    edit(
        infra_copy / "bicep" / "modules" / "vault-grants.bicep",
        "resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {\n  name: vaultName\n",
        "resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {\n  name: vaultName\n"
        "  location: 'westeurope'\n",
    )
    found = problems(infra_copy / "bicep")
    assert len(found) == 1 and "existing resource vault writes `location`" in found[0], found


def test_comments_and_strings_declare_nothing(infra_copy):
    edit(
        infra_copy / "bicep" / "main.bicep",
        "var alertReceivers = ",
        "// resource fake 'Microsoft.Fake/things@2020-01-01' = {\n"
        "/* resource fake2 'Microsoft.Fake/things@2020-01-01' = {\n  properties: {\n    nope: 1\n  }\n} */\n"
        "var fakeText = '''\nresource fake3 'Microsoft.Fake/things@2020-01-01' = {\n'''\n"
        "var alertReceivers = ",
    )
    assert problems(infra_copy / "bicep") == []
    assert len(all_declarations(infra_copy / "bicep")) == len(all_declarations(INFRA / "bicep"))
