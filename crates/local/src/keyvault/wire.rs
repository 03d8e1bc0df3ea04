//! JSON pieces shared by secrets, keys and certificates: attributes, paging, query parameters.
//!
//! Field names and shapes follow the service and the SDK models (azure_security_keyvault_* 1.0.1):
//! epoch-second integers for times, `{value: [...], nextLink}` pages.

use super::error::ServiceError;
use super::store::{AttributeInput, Attributes, RECOVERABLE_DAYS, RECOVERY_LEVEL};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// API versions the emulator accepts: every stable data-plane version (2015-06-01, 2016-10-01, 7.0-7.6,
/// 2025-07-01, 2026-04-01) and the preview the newest official SDK betas send by default. What the newest
/// releases default to (docs/local-stack.md has the sources): Python secrets/certificates 4.12 and JavaScript
/// secrets 4.12 2026-04-01; Python keys, JavaScript keys/certificates, .NET and Rust 2025-07-01 (.NET Keys
/// 4.11 betas 2026-01-01-preview); Java and Go 7.6.
/// Shapes per version: from 2025-07-01 a certificate-backed secret carries `previousVersion` (the
/// certificate's previous version), older versions never do ([`has_previous_version`]); 2026-04-01 left
/// SecretBundle unchanged. 2025-07-01's `outContentType` GET parameter (PFX ⇄ PEM conversion) is not
/// implemented: the value is returned in the policy's content type at every version.
pub const API_VERSIONS: &[&str] = &[
    "2026-04-01",
    "2026-01-01-preview",
    "2025-07-01",
    "7.6",
    "7.5",
    "7.4",
    "7.3",
    "7.2",
    "7.1",
    "7.0",
    "2016-10-01",
    "2015-06-01",
];
/// `at` as an HTTP `Date` value (RFC 7231 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`).
/// (`None` cannot happen: the format yields ASCII letters, digits, spaces, commas and colons only.)
pub fn http_date(at: chrono::DateTime<chrono::Utc>) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

/// The newest stable API version, named in errors.
pub const LATEST_API_VERSION: &str = "2026-04-01";
/// Whether `api_version` returns `previousVersion` on certificate-backed secrets (2025-07-01 and later; the
/// 7.x versions and 2016-10-01 do not).
pub fn has_previous_version(api_version: &str) -> bool {
    // Dated versions compare as strings; "7.x" never starts with "20".
    api_version.starts_with("20") && api_version >= "2025-07-01"
}

/// The service's page size limit.
pub const MAX_PAGE: usize = 25;

/// Attributes as the service returns them.
#[derive(Debug, Serialize)]
pub struct WireAttributes {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    #[serde(rename = "recoveryLevel")]
    pub recovery_level: &'static str,
    #[serde(rename = "recoverableDays")]
    pub recoverable_days: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
}

impl From<&Attributes> for WireAttributes {
    fn from(a: &Attributes) -> Self {
        Self {
            enabled: a.enabled,
            nbf: a.nbf,
            exp: a.exp,
            created: a.created,
            updated: a.updated,
            recovery_level: RECOVERY_LEVEL,
            recoverable_days: RECOVERABLE_DAYS,
            exportable: None,
        }
    }
}

/// Attributes as callers send them (create and update).
#[derive(Debug, Default, Deserialize)]
pub struct AttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

impl From<Option<AttributesIn>> for AttributeInput {
    fn from(a: Option<AttributesIn>) -> Self {
        let a = a.unwrap_or_default();
        Self { enabled: a.enabled, nbf: a.nbf, exp: a.exp }
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "nextLink")]
    pub next_link: Option<String>,
}

/// Query parameters the emulator understands.
#[derive(Debug, Default)]
pub struct Query {
    pub api_version: Option<String>,
    pub maxresults: Option<String>,
    pub skiptoken: Option<String>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut out = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "api-version" => out.api_version = Some(v.into_owned()),
                "maxresults" => out.maxresults = Some(v.into_owned()),
                "$skiptoken" => out.skiptoken = Some(v.into_owned()),
                _ => {}
            }
        }
        out
    }

    /// The api-version, if it is one the emulator speaks.
    pub fn check_api_version(&self) -> Result<&str, ServiceError> {
        match self.api_version.as_deref() {
            None => Err(ServiceError::BadParameter("The api-version query parameter is required.".into())),
            Some(v) if API_VERSIONS.contains(&v) => Ok(v),
            Some(v) => Err(ServiceError::BadParameter(format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_API_VERSION})."
            ))),
        }
    }

    /// Cuts one page out of `items` and builds the `nextLink` (absolute, on `link_base` + `path`).
    pub fn page<T>(&self, mut items: Vec<T>, link_base: &str, path: &str) -> Result<Page<T>, ServiceError> {
        let size = match self.maxresults.as_deref() {
            None => MAX_PAGE,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(ServiceError::BadParameter(format!(
                        "Invalid maxresults '{raw}': it must be an integer from 1 to {MAX_PAGE}."
                    )));
                }
            },
        };
        let start = match self.skiptoken.as_deref() {
            None => 0,
            Some(token) => decode_skiptoken(token)
                .ok_or_else(|| ServiceError::BadParameter(format!("The $skiptoken '{token}' is not valid.")))?,
        };
        let total = items.len();
        let end = start.saturating_add(size).min(total);
        let value: Vec<T> = if start >= total {
            Vec::new()
        } else {
            items.truncate(end);
            items.drain(..start);
            items
        };
        let next_link = (end < total).then(|| {
            let api = self.api_version.as_deref().unwrap_or(LATEST_API_VERSION);
            let token = URL_SAFE_NO_PAD.encode(format!("offset:{end}"));
            let mut link = format!("{link_base}{path}?api-version={api}&$skiptoken={token}");
            if self.maxresults.is_some() {
                link.push_str(&format!("&maxresults={size}"));
            }
            link
        });
        Ok(Page { value, next_link })
    }
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.strip_prefix("offset:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_header_is_an_imf_fixdate() {
        let at = chrono::DateTime::from_timestamp(784_111_777, 0).unwrap();
        assert_eq!(http_date(at).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    fn query(maxresults: Option<&str>, skiptoken: Option<String>) -> Query {
        Query { api_version: Some("2025-07-01".into()), maxresults: maxresults.map(str::to_string), skiptoken }
    }

    #[test]
    fn pages_follow_next_links_to_the_end() {
        let items: Vec<u32> = (0..7).collect();
        let first = query(Some("3"), None).page(items.clone(), "https://h", "/secrets").unwrap();
        assert_eq!(first.value, vec![0, 1, 2]);
        let link = first.next_link.unwrap();
        let parsed = Query::parse(link.split_once('?').map(|(_, q)| q));
        let second = parsed.page(items.clone(), "https://h", "/secrets").unwrap();
        assert_eq!(second.value, vec![3, 4, 5]);
        let parsed = Query::parse(second.next_link.as_deref().and_then(|l| l.split_once('?')).map(|(_, q)| q));
        let third = parsed.page(items, "https://h", "/secrets").unwrap();
        assert_eq!((third.value, third.next_link), (vec![6], None));
    }

    #[test]
    fn bad_maxresults_and_versions_are_refused() {
        assert!(query(Some("26"), None).page(vec![1], "h", "/p").is_err());
        assert!(query(Some("0"), None).page(vec![1], "h", "/p").is_err());
        let q = Query { api_version: Some("1999-01-01".into()), ..Query::default() };
        assert!(q.check_api_version().unwrap_err().to_string().contains("1999-01-01"));
    }
}
