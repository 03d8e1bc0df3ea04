//! Key Vault's built-in RBAC roles and their published data actions, in one place: the local stack's Key
//! Vault emulator enforces them, and the handlers use them to name the role a `ForbiddenByRbac` denial is
//! missing. Pure data and string matching, no SDK types.
//!
//! The table is Azure's published definition of each role (`dataActions`; none of these roles has
//! `notDataActions`). Every data action lives under [`PREFIX`].

/// The namespace every Key Vault data action lives under.
pub const PREFIX: &str = "Microsoft.KeyVault/vaults/";

/// One built-in role: its display name, role definition id and `dataActions` (relative to [`PREFIX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInRole {
    pub name: &'static str,
    pub id: &'static str,
    pub data_actions: &'static [&'static str],
}

impl BuiltInRole {
    /// Whether the role's data actions include `action` (a full action such as
    /// `Microsoft.KeyVault/vaults/secrets/getSecret/action`). Azure matches data actions case-insensitively,
    /// and `*` matches any run of characters, `/` included.
    pub fn grants(&self, action: &str) -> bool {
        self.data_actions.iter().any(|pattern| wildcard_match(&format!("{PREFIX}{pattern}"), action))
    }
}

/// Key Vault's data-plane built-in roles (Key Vault Data Access Administrator has no data actions).
pub const ROLES: &[BuiltInRole] = &[
    BuiltInRole { name: "Key Vault Administrator", id: "00482a5a-887f-4fb3-b363-3b7fe8e74483", data_actions: &["*"] },
    BuiltInRole {
        name: "Key Vault Reader",
        id: "21090545-7ca7-4776-b22c-e363652d74d2",
        data_actions: &["*/read", "secrets/readMetadata/action"],
    },
    BuiltInRole {
        name: "Key Vault Secrets Officer",
        id: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        data_actions: &["secrets/*"],
    },
    BuiltInRole {
        name: "Key Vault Secrets User",
        id: "4633458b-17de-408a-b874-0445c86b69e6",
        data_actions: &["secrets/getSecret/action", "secrets/readMetadata/action"],
    },
    BuiltInRole {
        name: "Key Vault Crypto Officer",
        id: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        data_actions: &["keys/*", "keyrotationpolicies/*"],
    },
    BuiltInRole {
        name: "Key Vault Crypto User",
        id: "12338af0-0e69-4776-bea7-57ae8d297424",
        data_actions: &[
            "keys/read",
            "keys/update/action",
            "keys/backup/action",
            "keys/encrypt/action",
            "keys/decrypt/action",
            "keys/wrap/action",
            "keys/unwrap/action",
            "keys/sign/action",
            "keys/verify/action",
        ],
    },
    BuiltInRole {
        name: "Key Vault Crypto Service Encryption User",
        id: "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        data_actions: &["keys/read", "keys/wrap/action", "keys/unwrap/action"],
    },
    BuiltInRole {
        name: "Key Vault Certificates Officer",
        id: "a4417e6f-fecd-4de8-b567-7b0420556985",
        data_actions: &["certificatecas/*", "certificates/*", "certificatecontacts/write"],
    },
    BuiltInRole {
        name: "Key Vault Certificate User",
        id: "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        data_actions: &["certificates/read", "secrets/getSecret/action", "secrets/readMetadata/action", "keys/read"],
    },
];

/// The built-in role named `name` (case-insensitive, as Azure compares role names).
pub fn role_by_name(name: &str) -> Option<&'static BuiltInRole> {
    ROLES.iter().find(|r| r.name.eq_ignore_ascii_case(name))
}

/// The built-in role with definition id `id` (a GUID, or a full `.../roleDefinitions/<guid>` id).
pub fn role_by_id(id: &str) -> Option<&'static BuiltInRole> {
    let guid = id.rsplit('/').next().unwrap_or(id);
    ROLES.iter().find(|r| r.id.eq_ignore_ascii_case(guid))
}

/// The built-in roles that grant `action`, narrowest first (fewest data actions, Administrator last), so a
/// message can name the least-privileged fix first.
pub fn roles_granting(action: &str) -> Vec<&'static BuiltInRole> {
    let mut roles: Vec<&'static BuiltInRole> = ROLES.iter().filter(|r| r.grants(action)).collect();
    roles.sort_by_key(|r| (r.data_actions.contains(&"*"), r.data_actions.iter().any(|a| a.ends_with('*'))));
    roles
}

/// A `ForbiddenByRbac` denial read out of the service's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The data action refused, e.g. `Microsoft.KeyVault/vaults/secrets/setSecret/action`.
    pub action: String,
    /// The resource it was refused on (lower-cased by the service), if the message names it.
    pub resource: Option<String>,
    /// The caller line (`appid=...;oid=...;iss=...`), if the message names it.
    pub caller: Option<String>,
}

impl Denial {
    /// Reads the `Action:`, `Resource:` and `Caller:` lines of a Key Vault RBAC denial message (the lines are
    /// joined by `\r\n`; the message may be embedded in a larger error text). `None` when no action is named.
    pub fn parse(message: &str) -> Option<Self> {
        let field = |label: &str| {
            let start = message.find(label)? + label.len();
            let rest = &message[start..];
            // A line ends at a real line break, or, where the SDK's error text quotes the JSON body, at its
            // escaped form (`\r\n` as backslash sequences) or the string's closing quote.
            let end = rest.find(['\r', '\n', '\\', '"']).unwrap_or(rest.len());
            Some(rest[..end].trim().trim_matches('\'').to_owned())
        };
        let action = field("Action: ").filter(|a| !a.is_empty())?;
        Some(Self { action, resource: field("Resource: "), caller: field("Caller: ") })
    }

    /// `the identity lacks '<action>' on '<resource>': grant it Key Vault Secrets Officer (or: ...)`.
    pub fn explain(&self) -> String {
        let roles = roles_granting(&self.action);
        let on = self.resource.as_deref().map(|r| format!(" on '{r}'")).unwrap_or_default();
        let who = self.caller.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
        let fix = match roles.split_first() {
            None => "no built-in Key Vault role grants it".to_owned(),
            Some((first, [])) => format!("missing role: {}", first.name),
            Some((first, rest)) => format!(
                "missing role: {} (or one of: {})",
                first.name,
                rest.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
            ),
        };
        format!("the identity{who} may not perform '{}'{on}; {fix}", self.action)
    }
}

/// For an error text carrying a Key Vault `ForbiddenByRbac` denial, the explanation naming the missing
/// role; `None` for any other text.
pub fn explain_forbidden(message: &str) -> Option<String> {
    if !message.contains("ForbiddenByRbac") && !message.contains("Caller is not authorized") {
        return None;
    }
    Denial::parse(message).map(|d| d.explain())
}

/// Azure's data-action pattern match: case-insensitive, `*` matches any run of characters.
pub fn wildcard_match(pattern: &str, action: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let action = action.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else { return pattern == action };
    let Some(mut rest) = action.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(rel: &str) -> String {
        format!("{PREFIX}{rel}")
    }

    #[test]
    fn a_denial_quoted_as_escaped_json_in_the_sdk_error_is_read_line_by_line() {
        let body = r#"HTTP 403 (403): {"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\r\nCaller: appid=a1;oid=o1;iss=https://sts.windows.net/t/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/subscriptions/s/vaults/kv/secrets/db'\r\nAssignment: (not found)\r\n","innererror":{"code":"ForbiddenByRbac"}}}"#;
        let explained = explain_forbidden(body).unwrap();
        assert_eq!(
            explained,
            "the identity (appid=a1;oid=o1;iss=https://sts.windows.net/t/) may not perform \
             'Microsoft.KeyVault/vaults/secrets/getSecret/action' on '/subscriptions/s/vaults/kv/secrets/db'; missing \
             role: Key Vault Secrets User (or one of: Key Vault Certificate User, Key Vault Secrets Officer, Key \
             Vault Administrator)"
        );
    }

    #[test]
    fn wildcards_span_slashes_and_match_case_insensitively() {
        assert!(wildcard_match("Microsoft.KeyVault/vaults/*", &action("secrets/getSecret/action")));
        assert!(wildcard_match("Microsoft.KeyVault/vaults/*/read", &action("keys/read")));
        assert!(wildcard_match("microsoft.keyvault/VAULTS/secrets/*", &action("secrets/setSecret/action")));
        assert!(!wildcard_match("Microsoft.KeyVault/vaults/*/read", &action("secrets/readMetadata/action")));
        assert!(!wildcard_match("Microsoft.KeyVault/vaults/keys/read", &action("keys/read/x")));
        assert!(
            wildcard_match("a*b*c", "abc") && wildcard_match("a*b*c", "axxbyyc") && !wildcard_match("a*b*c", "acb")
        );
    }

    #[test]
    fn reader_reads_metadata_but_no_secret_value() {
        let reader = role_by_name("key vault reader").unwrap();
        assert!(reader.grants(&action("secrets/readMetadata/action")));
        assert!(reader.grants(&action("certificates/read")));
        assert!(!reader.grants(&action("secrets/getSecret/action")));
        assert!(!reader.grants(&action("secrets/update/action")));
    }

    #[test]
    fn roles_are_found_by_name_and_by_id() {
        assert_eq!(role_by_id("b86a8fe4-44ce-4948-aee5-eccb2c155cd7").unwrap().name, "Key Vault Secrets Officer");
        let full =
            "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6";
        assert_eq!(role_by_id(full).unwrap().name, "Key Vault Secrets User");
        assert!(role_by_name("Storage Blob Data Owner").is_none());
    }

    #[test]
    fn the_narrowest_granting_role_comes_first() {
        let names: Vec<_> = roles_granting(&action("secrets/update/action")).iter().map(|r| r.name).collect();
        assert_eq!(names, ["Key Vault Secrets Officer", "Key Vault Administrator"]);
        let names: Vec<_> = roles_granting(&action("secrets/getSecret/action")).iter().map(|r| r.name).collect();
        assert_eq!(names[..2], ["Key Vault Secrets User", "Key Vault Certificate User"]);
        assert_eq!(names.last(), Some(&"Key Vault Administrator"));
    }

    #[test]
    fn a_denial_message_is_explained_with_the_missing_role() {
        let message = "get secret on 'kv/db': HTTP 403 (Forbidden): Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=a1;oid=o1;iss=https://sts.windows.net/t/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/update/action'\r\nResource: '/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv/secrets/db'\r\nAssignment: (not found)\r\n";
        let explained = explain_forbidden(message).unwrap();
        assert_eq!(
            explained,
            "the identity (appid=a1;oid=o1;iss=https://sts.windows.net/t/) may not perform 'Microsoft.KeyVault/vaults/secrets/update/action' on '/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv/secrets/db'; missing role: Key Vault Secrets Officer (or one of: Key Vault Administrator)"
        );
        assert_eq!(explain_forbidden("HTTP 403 (Forbidden): Operation get is not allowed on a disabled secret."), None);
        // The service's JSON body quoted whole keeps its line breaks escaped: the action still ends at them.
        let escaped = r#"HTTP 403: {"error":{"code":"Forbidden","message":"Caller: appid=a1\r\nAction: 'Microsoft.KeyVault/vaults/secrets/readMetadata/action'\r\nResource: '/x'\r\n","innererror":{"code":"ForbiddenByRbac"}}}"#;
        let explained = explain_forbidden(escaped).unwrap();
        assert!(
            explained.contains("may not perform 'Microsoft.KeyVault/vaults/secrets/readMetadata/action' on '/x'"),
            "{explained}"
        );
        assert!(explained.contains("missing role: Key Vault Reader"), "{explained}");
    }
}
