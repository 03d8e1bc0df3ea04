//! Connection details of a database credential, read from a secret in one of two forms, the same for every engine
//! (PostgreSQL, MySQL):
//!
//! - **JSON** (AWS's shape, and the usual one): `{"host", "port", "user" | "username", "password",
//!   "database" | "dbname", ...}`. Unknown members are kept as they are when the value is rewritten, and so
//!   are the spellings the secret uses.
//! - **Tags** (Microsoft's sample shape): the value is the password alone, `CredentialId` names the login and
//!   `ProviderAddress` the server: `<scheme>://host[:port][/database]` (`postgresql://`, `mysql://`), or the ARM
//!   resource id of an Azure flexible server (`.../providers/Microsoft.DBforPostgreSQL/flexibleServers/<name>`,
//!   meaning `<name>.postgres.database.azure.com:5432/postgres`; `Microsoft.DBforMySQL` likewise, on
//!   `<name>.mysql.database.azure.com:3306`).

use keyturn_config::SecretString;
use keyturn_vault::model::Tags;
use serde_json::{Map, Value};

use crate::policy::{CREDENTIAL_ID, PROVIDER_ADDRESS, tag};

/// What differs between the engines in a credential's details and names.
#[derive(Debug)]
pub(crate) struct Kind {
    /// The engine's name, for messages.
    pub(crate) name: &'static str,
    /// The URL schemes of a `ProviderAddress`; the first is the one messages show.
    pub(crate) schemes: &'static [&'static str],
    pub(crate) default_port: u16,
    /// The database a login opens when the details name none (empty: none).
    pub(crate) default_database: &'static str,
    /// The resource-id segment of a flexible server, lowercase.
    pub(crate) flexible_servers: &'static str,
    /// The host name a flexible server's name gets.
    pub(crate) host_suffix: &'static str,
    /// The longest login name the engine allows, in bytes.
    pub(crate) max_user: usize,
}

/// PostgreSQL (Azure Database for PostgreSQL flexible server).
pub(crate) const POSTGRES: Kind = Kind {
    name: "PostgreSQL",
    schemes: &["postgresql", "postgres"],
    default_port: 5432,
    default_database: "postgres",
    flexible_servers: "/providers/microsoft.dbforpostgresql/flexibleservers/",
    host_suffix: ".postgres.database.azure.com",
    max_user: 63,
};

/// MySQL (Azure Database for MySQL flexible server; MariaDB speaks the same).
pub(crate) const MYSQL: Kind = Kind {
    name: "MySQL",
    schemes: &["mysql"],
    default_port: 3306,
    default_database: "",
    flexible_servers: "/providers/microsoft.dbformysql/flexibleservers/",
    host_suffix: ".mysql.database.azure.com",
    // MySQL 8's limit (MariaDB allows 80).
    max_user: 32,
};

/// Where and as whom to log in.
#[derive(Clone)]
pub(crate) struct Details {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: SecretString,
    /// Empty: none (a MySQL login needs none).
    pub(crate) database: String,
    form: Form,
}

#[derive(Clone)]
enum Form {
    /// The secret's JSON object without its password member, and the member names it uses.
    Json {
        object: Map<String, Value>,
        user_key: &'static str,
    },
    Tags,
}

impl std::fmt::Debug for Details {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a SecretString (prints ****); the rest names the login, which logs may show.
        write!(f, "{}@{}:{}", self.user, self.host, self.port)?;
        if !self.database.is_empty() {
            write!(f, "/{}", self.database)?;
        }
        Ok(())
    }
}

impl Details {
    /// Reads the details from a secret's value and tags. The error says what is missing, never the value.
    pub(crate) fn from_secret(value: &SecretString, tags: &Tags, kind: &Kind) -> Result<Self, String> {
        if value.expose().trim_start().starts_with('{') {
            Self::from_json(value, kind)
        } else {
            Self::from_tags(value, tags, kind)
        }
    }

    fn from_json(value: &SecretString, kind: &Kind) -> Result<Self, String> {
        // serde_json's messages quote no input, only positions, so the error cannot leak the value.
        let mut object: Map<String, Value> = serde_json::from_str(value.expose())
            .map_err(|e| format!("the secret's value is not a JSON object of connection details ({e})"))?;
        let password = match object.remove("password") {
            Some(Value::String(password)) => SecretString::new(password),
            Some(_) => return Err("the JSON member 'password' is not a string".to_owned()),
            None => return Err("the JSON connection details have no 'password'".to_owned()),
        };
        let string =
            |object: &Map<String, Value>, keys: &[&'static str]| -> Result<Option<(&'static str, String)>, String> {
                for key in keys {
                    match object.get(*key) {
                        Some(Value::String(s)) if !s.trim().is_empty() => return Ok(Some((key, s.trim().to_owned()))),
                        Some(Value::Null) | None => {}
                        Some(_) => return Err(format!("the JSON member '{key}' is not a non-empty string")),
                    }
                }
                Ok(None)
            };
        let host = string(&object, &["host"])?.ok_or("the JSON connection details have no 'host'")?.1;
        let (user_key, user) = string(&object, &["user", "username"])?
            .ok_or("the JSON connection details have no 'user' (or 'username')")?;
        let database =
            string(&object, &["database", "dbname"])?.map_or_else(|| kind.default_database.to_owned(), |(_, d)| d);
        let port = match object.get("port") {
            None | Some(Value::Null) => kind.default_port,
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or("the JSON member 'port' is not a port number")?
            }
            Some(Value::String(s)) => s.trim().parse().map_err(|_| "the JSON member 'port' is not a port number")?,
            Some(_) => return Err("the JSON member 'port' is not a port number".to_owned()),
        };
        Ok(Self { host, port, user, password, database, form: Form::Json { object, user_key } })
    }

    fn from_tags(value: &SecretString, tags: &Tags, kind: &Kind) -> Result<Self, String> {
        let user = tag(tags, CREDENTIAL_ID).filter(|u| !u.is_empty()).ok_or_else(|| {
            format!(
                "the secret's value is not JSON, so it is the password alone and tag {CREDENTIAL_ID} must name the \
                 login"
            )
        })?;
        let address = tag(tags, PROVIDER_ADDRESS).ok_or_else(|| {
            format!(
                "the secret's value is not JSON, so tag {PROVIDER_ADDRESS} must name the server \
                 ({}://host[:port][/database] or a flexible server's resource id)",
                kind.schemes[0]
            )
        })?;
        let (host, port, database) = parse_address(address, kind)?;
        if value.is_empty() {
            return Err("the secret's value (the password) is empty".to_owned());
        }
        Ok(Self { host, port, user: user.to_owned(), password: value.clone(), database, form: Form::Tags })
    }

    /// The same server and form with another login and password.
    pub(crate) fn with_login(&self, user: &str, password: SecretString) -> Self {
        Self { user: user.to_owned(), password, ..self.clone() }
    }

    /// The secret value for these details, in the form they were read from.
    pub(crate) fn to_value(&self) -> SecretString {
        match &self.form {
            Form::Tags => self.password.clone(),
            Form::Json { object, user_key } => {
                let mut object = object.clone();
                object.insert((*user_key).to_owned(), Value::String(self.user.clone()));
                object.insert("password".to_owned(), Value::String(self.password.expose().to_owned()));
                // Serialising a map of strings and numbers cannot fail; an empty value would be refused by
                // the caller's checks rather than promoted.
                SecretString::new(serde_json::to_string(&Value::Object(object)).unwrap_or_default())
            }
        }
    }

    /// Tags the new version needs beside the value: `CredentialId` follows the login where it names it.
    pub(crate) fn tag_changes(&self, current_tags: &Tags) -> Tags {
        let mut changes = Tags::new();
        if matches!(self.form, Form::Tags) || tag(current_tags, CREDENTIAL_ID).is_some() {
            changes.insert(CREDENTIAL_ID.to_owned(), self.user.clone());
        }
        changes
    }

    /// The same server: host (case-insensitively) and port.
    pub(crate) fn same_server(&self, other: &Details) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port
    }
}

/// `<scheme>://host[:port][/database]` or a flexible server's resource id.
fn parse_address(address: &str, kind: &Kind) -> Result<(String, u16, String), String> {
    let lower = address.to_ascii_lowercase();
    let scheme = kind.schemes[0];
    if let Some(at) = lower.find(kind.flexible_servers) {
        let server = &address[at + kind.flexible_servers.len()..];
        let server = server.trim_end_matches('/');
        if server.is_empty() || server.contains('/') {
            return Err(format!("tag {PROVIDER_ADDRESS}: '{address}' is not a flexible server's resource id"));
        }
        return Ok((
            format!("{}{}", server.to_ascii_lowercase(), kind.host_suffix),
            kind.default_port,
            kind.default_database.to_owned(),
        ));
    }
    let url = url::Url::parse(address).map_err(|_| {
        format!(
            "tag {PROVIDER_ADDRESS}: '{address}' is neither {scheme}://host[:port][/database] nor a {} flexible \
             server's resource id",
            kind.name
        )
    })?;
    if !kind.schemes.contains(&url.scheme()) || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "tag {PROVIDER_ADDRESS}: '{}' must be {scheme}://host[:port][/database] without credentials",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("tag {PROVIDER_ADDRESS}: no host in '{address}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let database = url.path().trim_matches('/');
    Ok((
        host,
        url.port().unwrap_or(kind.default_port),
        if database.is_empty() { kind.default_database.to_owned() } else { database.to_owned() },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn json_details_round_trip_keeping_unknown_members_and_spellings() {
        let value = SecretString::new(
            r#"{"engine":"postgres","host":"db.example","port":"6432","username":"app","password":"old-pw","dbname":"orders"}"#
                .to_owned(),
        );
        let details = Details::from_secret(&value, &Tags::new(), &POSTGRES).unwrap();
        assert_eq!(format!("{details:?}"), "app@db.example:6432/orders");
        let next = details.with_login("app_clone", SecretString::new("new \"pw\"".to_owned()));
        let json: Value = serde_json::from_str(next.to_value().expose()).unwrap();
        assert_eq!(json["username"], "app_clone");
        assert_eq!(json["password"], "new \"pw\"");
        assert_eq!(json["engine"], "postgres");
        assert_eq!(json["dbname"], "orders");
        assert!(json.get("user").is_none());
        assert!(next.tag_changes(&Tags::new()).is_empty());
        assert_eq!(next.tag_changes(&tags(&[("credentialid", "app")]))["CredentialId"], "app_clone");
    }

    #[test]
    fn json_defaults_and_errors_name_the_member_never_the_value() {
        let details = Details::from_secret(
            &SecretString::new(r#"{"host":"h","user":"u","password":"p"}"#.to_owned()),
            &Tags::new(),
            &POSTGRES,
        )
        .unwrap();
        assert_eq!((details.port, details.database.as_str()), (5432, "postgres"));
        for (json, expected) in [
            (r#"{"host":"h","user":"u"}"#, "no 'password'"),
            (r#"{"user":"u","password":"hunter2"}"#, "no 'host'"),
            (r#"{"host":"h","password":"hunter2"}"#, "no 'user'"),
            (r#"{"host":"h","user":"u","password":"hunter2","port":70000}"#, "'port' is not a port number"),
            (r#"{"host":"h","user":"u","password":"hunter2""#, "not a JSON object"),
        ] {
            let error = Details::from_secret(&SecretString::new(json.to_owned()), &Tags::new(), &POSTGRES).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn tag_form_reads_the_login_from_credential_id_and_the_server_from_provider_address() {
        let password = SecretString::new("pw".to_owned());
        let details = Details::from_secret(
            &password,
            &tags(&[("CredentialId", "app"), ("ProviderAddress", "postgresql://127.0.0.1:5433/orders")]),
            &POSTGRES,
        )
        .unwrap();
        assert_eq!(format!("{details:?}"), "app@127.0.0.1:5433/orders");
        let next = details.with_login("app_clone", SecretString::new("pw2".to_owned()));
        assert_eq!(next.to_value().expose(), "pw2");
        assert_eq!(next.tag_changes(&Tags::new())["CredentialId"], "app_clone");

        let azure = Details::from_secret(
            &password,
            &tags(&[
                ("CredentialId", "app"),
                (
                    "ProviderAddress",
                    "/subscriptions/s/resourceGroups/g/providers/Microsoft.DBforPostgreSQL/flexibleServers/Orders-DB",
                ),
            ]),
            &POSTGRES,
        )
        .unwrap();
        assert_eq!(format!("{azure:?}"), "app@orders-db.postgres.database.azure.com:5432/postgres");

        let error = Details::from_secret(&password, &tags(&[("CredentialId", "app")]), &POSTGRES).unwrap_err();
        assert!(error.contains("ProviderAddress"), "{error}");
        let error = Details::from_secret(
            &password,
            &tags(&[("CredentialId", "app"), ("ProviderAddress", "postgresql://admin:pw@h/db")]),
            &POSTGRES,
        )
        .unwrap_err();
        assert!(error.contains("without credentials") && !error.contains("pw@"), "{error}");
    }

    #[test]
    fn mysql_details_need_no_database_and_read_mysql_addresses_and_flexible_servers() {
        let details = Details::from_secret(
            &SecretString::new(r#"{"engine":"mysql","host":"h","username":"app","password":"p"}"#.to_owned()),
            &Tags::new(),
            &MYSQL,
        )
        .unwrap();
        assert_eq!(format!("{details:?}"), "app@h:3306");
        let password = SecretString::new("pw".to_owned());
        let url = Details::from_secret(
            &password,
            &tags(&[("CredentialId", "app"), ("ProviderAddress", "mysql://127.0.0.1:13306")]),
            &MYSQL,
        )
        .unwrap();
        assert_eq!(format!("{url:?}"), "app@127.0.0.1:13306");
        let azure = Details::from_secret(
            &password,
            &tags(&[
                ("CredentialId", "app"),
                (
                    "ProviderAddress",
                    "/subscriptions/s/resourceGroups/g/providers/Microsoft.DBforMySQL/flexibleServers/Shop",
                ),
            ]),
            &MYSQL,
        )
        .unwrap();
        assert_eq!(format!("{azure:?}"), "app@shop.mysql.database.azure.com:3306");
        let error = Details::from_secret(
            &password,
            &tags(&[("CredentialId", "app"), ("ProviderAddress", "postgresql://h/db")]),
            &MYSQL,
        )
        .unwrap_err();
        assert!(error.contains("must be mysql://host[:port][/database]"), "{error}");
    }
}
