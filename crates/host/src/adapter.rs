//! Which platform this process serves, and that platform's own settings: the one place in `host` where the
//! adapters' environment variables are read (the handlers' settings are read by `crates/config`; these must
//! be known before any of that loads).
//!
//! | variable | read when | meaning |
//! |---|---|---|
//! | `KEYTURN_ADAPTER` | always | `azure-functions` or `aws-lambda`: overrides the detection below |
//! | `AWS_LAMBDA_RUNTIME_API` | detection, Lambda | set by Lambda: the Runtime API's `host:port`; selects Lambda |
//! | `FUNCTIONS_CUSTOMHANDLER_PORT` | detection, Azure | set by the Functions host: the port to listen on; selects Azure |
//! | `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_FUNCTION_VERSION` | Lambda | set by Lambda; checked here because `lambda_runtime` panics without them |
//! | `KEYTURN_WEBHOOK_SECRET` | Lambda | the shared secret every webhook request must carry (see [`crate::aws_lambda::secret`]) |

use std::ffi::OsString;

use crate::aws_lambda::secret::{SecretError, WebhookSecret};
use crate::azure_functions::wire::PORT_VARIABLE;

/// Names the adapter explicitly: `azure-functions` or `aws-lambda`.
pub const ADAPTER_VARIABLE: &str = "KEYTURN_ADAPTER";
/// Set by Lambda in every execution environment: `host:port` of the Runtime API.
pub const RUNTIME_API_VARIABLE: &str = "AWS_LAMBDA_RUNTIME_API";
/// Set by Lambda; `lambda_runtime` reads them and panics when one is missing, so they are checked first.
pub const LAMBDA_REQUIRED_VARIABLES: [&str; 3] =
    ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION"];
/// The webhook's shared secret on Lambda.
pub const WEBHOOK_SECRET_VARIABLE: &str = "KEYTURN_WEBHOOK_SECRET";

const AZURE_NAME: &str = "azure-functions";
const LAMBDA_NAME: &str = "aws-lambda";

/// The platform a handler process serves, as its environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    /// An Azure Functions custom handler: listen on `127.0.0.1:port` for the Functions host.
    AzureFunctions {
        /// From `FUNCTIONS_CUSTOMHANDLER_PORT`.
        port: u16,
    },
    /// An AWS Lambda function behind a function URL (or API Gateway HTTP API) that Event Grid posts to.
    AwsLambda {
        /// The webhook's shared secret, or why there is none. A missing secret does not stop the process
        /// (that would crash-loop Lambda's init): every request is then refused with `500` and this reason,
        /// so Event Grid keeps the events until the setting is fixed, and nothing runs unauthenticated.
        secret: Result<WebhookSecret, SecretError>,
    },
}

/// Why no [`Adapter`] fits the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// No platform's variable is set.
    #[error(
        "no platform found: neither {RUNTIME_API_VARIABLE} (AWS Lambda) nor {PORT_VARIABLE} (Azure Functions) is set; keyturn handlers are started by Lambda or by the Functions host (func start, or keyturn dev locally), which set them"
    )]
    NoPlatform,
    /// Both platforms' variables are set and nothing says which one is meant.
    #[error(
        "both {RUNTIME_API_VARIABLE} and {PORT_VARIABLE} are set; set {ADAPTER_VARIABLE} to {AZURE_NAME} or {LAMBDA_NAME} to choose"
    )]
    Ambiguous,
    /// `KEYTURN_ADAPTER` names no adapter.
    #[error("{ADAPTER_VARIABLE}={value:?} is not an adapter (expected {AZURE_NAME} or {LAMBDA_NAME})")]
    UnknownAdapter {
        /// The value found, lossily decoded.
        value: String,
    },
    /// The chosen platform's own variable is missing.
    #[error("{variable} is not set, but the {adapter} adapter needs it")]
    Missing {
        /// The variable.
        variable: &'static str,
        /// The adapter that needs it.
        adapter: &'static str,
    },
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` is set but is not a port.
    #[error("{PORT_VARIABLE}={value:?} is not a port number (1-65535)")]
    InvalidPort {
        /// The value found, lossily decoded.
        value: String,
    },
    /// A Lambda variable has a value Lambda never sets.
    #[error("{variable}={value:?} is not {expected}")]
    InvalidLambdaVariable {
        /// The variable.
        variable: &'static str,
        /// The value found, lossily decoded.
        value: String,
        /// What a valid value is.
        expected: &'static str,
    },
}

impl Adapter {
    /// Picks the adapter from environment variables, read through `var` (`std::env::var_os` in production):
    /// `KEYTURN_ADAPTER` when set, else the platform whose variable is present.
    pub fn from_env(var: impl Fn(&str) -> Option<OsString>) -> Result<Adapter, AdapterError> {
        let read = |name: &str| var(name).map(|value| value.to_string_lossy().into_owned());
        let choice = match read(ADAPTER_VARIABLE) {
            Some(value) => match value.trim() {
                AZURE_NAME => AZURE_NAME,
                LAMBDA_NAME => LAMBDA_NAME,
                _ => return Err(AdapterError::UnknownAdapter { value }),
            },
            None => match (read(RUNTIME_API_VARIABLE).is_some(), read(PORT_VARIABLE).is_some()) {
                (true, true) => return Err(AdapterError::Ambiguous),
                (true, false) => LAMBDA_NAME,
                (false, true) => AZURE_NAME,
                (false, false) => return Err(AdapterError::NoPlatform),
            },
        };
        if choice == AZURE_NAME { azure_functions(&read) } else { aws_lambda(&read) }
    }

    /// The Lambda Runtime API's `host:port` when the process runs on Lambda, whichever adapter was chosen:
    /// where to report that it cannot start.
    pub fn lambda_runtime_api(var: impl Fn(&str) -> Option<OsString>) -> Option<String> {
        let api = var(RUNTIME_API_VARIABLE)?.to_string_lossy().trim().to_owned();
        api.parse::<http::uri::Authority>().is_ok().then_some(api)
    }

    /// The adapter's name as `KEYTURN_ADAPTER` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Adapter::AzureFunctions { .. } => AZURE_NAME,
            Adapter::AwsLambda { .. } => LAMBDA_NAME,
        }
    }
}

fn azure_functions(read: &impl Fn(&str) -> Option<String>) -> Result<Adapter, AdapterError> {
    let value = read(PORT_VARIABLE).ok_or(AdapterError::Missing { variable: PORT_VARIABLE, adapter: AZURE_NAME })?;
    match value.trim().parse::<u16>() {
        // Port 0 would bind a random port the Functions host cannot know.
        Ok(port) if port != 0 => Ok(Adapter::AzureFunctions { port }),
        _ => Err(AdapterError::InvalidPort { value }),
    }
}

fn aws_lambda(read: &impl Fn(&str) -> Option<String>) -> Result<Adapter, AdapterError> {
    let missing = |variable| AdapterError::Missing { variable, adapter: LAMBDA_NAME };
    let api = read(RUNTIME_API_VARIABLE).ok_or(missing(RUNTIME_API_VARIABLE))?;
    // The runtime client builds `http://<this>/...` URIs and panics on one that does not parse.
    if api.trim().parse::<http::uri::Authority>().is_err() {
        return Err(AdapterError::InvalidLambdaVariable {
            variable: RUNTIME_API_VARIABLE,
            value: api,
            expected: "a host:port",
        });
    }
    for variable in LAMBDA_REQUIRED_VARIABLES {
        let value = read(variable).ok_or(missing(variable))?;
        if variable == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" && value.parse::<i32>().is_err() {
            return Err(AdapterError::InvalidLambdaVariable { variable, value, expected: "a number of megabytes" });
        }
    }
    let secret = match read(WEBHOOK_SECRET_VARIABLE) {
        Some(value) => WebhookSecret::new(value),
        None => Err(SecretError::Missing),
    };
    Ok(Adapter::AwsLambda { secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        move |name| pairs.iter().find(|(candidate, _)| candidate == name).map(|(_, value)| OsString::from(value))
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn lambda_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut pairs = vec![
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_LAMBDA_FUNCTION_NAME", "keyturn-near-expiry"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ];
        pairs.extend_from_slice(extra);
        pairs
    }

    #[test]
    fn port_variable_selects_azure_functions() {
        let adapter = Adapter::from_env(env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")]));
        assert_eq!(adapter, Ok(Adapter::AzureFunctions { port: 7071 }));
    }

    #[test]
    fn runtime_api_selects_lambda_with_its_secret() {
        let adapter = Adapter::from_env(env(&lambda_env(&[("KEYTURN_WEBHOOK_SECRET", SECRET)]))).unwrap();
        assert_eq!(adapter.name(), "aws-lambda");
        let Adapter::AwsLambda { secret: Ok(secret) } = adapter else { panic!("expected Lambda with a secret") };
        assert!(secret.matches(SECRET.as_bytes()));
    }

    #[test]
    fn lambda_without_a_usable_secret_still_starts_and_says_why() {
        let adapter = Adapter::from_env(env(&lambda_env(&[]))).unwrap();
        assert_eq!(adapter, Adapter::AwsLambda { secret: Err(SecretError::Missing) });
        let adapter = Adapter::from_env(env(&lambda_env(&[("KEYTURN_WEBHOOK_SECRET", "short")]))).unwrap();
        assert_eq!(adapter, Adapter::AwsLambda { secret: Err(SecretError::TooShort { length: 5 }) });
    }

    #[test]
    fn nothing_set_names_both_platforms() {
        let error = Adapter::from_env(env(&[])).unwrap_err();
        assert_eq!(error, AdapterError::NoPlatform);
        let message = error.to_string();
        assert!(message.contains("AWS_LAMBDA_RUNTIME_API") && message.contains("FUNCTIONS_CUSTOMHANDLER_PORT"));
    }

    #[test]
    fn both_platforms_need_an_explicit_choice() {
        let both = lambda_env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")]);
        assert_eq!(Adapter::from_env(env(&both)), Err(AdapterError::Ambiguous));

        let mut azure = both.clone();
        azure.push(("KEYTURN_ADAPTER", "azure-functions"));
        assert_eq!(Adapter::from_env(env(&azure)), Ok(Adapter::AzureFunctions { port: 7071 }));

        let mut lambda = both;
        lambda.push(("KEYTURN_ADAPTER", "aws-lambda"));
        assert_eq!(Adapter::from_env(env(&lambda)).unwrap().name(), "aws-lambda");
    }

    #[test]
    fn an_explicit_choice_needs_its_platforms_variables() {
        let error = Adapter::from_env(env(&[("KEYTURN_ADAPTER", "aws-lambda")])).unwrap_err();
        assert_eq!(error.to_string(), "AWS_LAMBDA_RUNTIME_API is not set, but the aws-lambda adapter needs it");
        let error = Adapter::from_env(env(&lambda_env(&[("KEYTURN_ADAPTER", "azure-functions")]))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "FUNCTIONS_CUSTOMHANDLER_PORT is not set, but the azure-functions adapter needs it"
        );
        let error = Adapter::from_env(env(&[("KEYTURN_ADAPTER", "gcp")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "KEYTURN_ADAPTER=\"gcp\" is not an adapter (expected azure-functions or aws-lambda)"
        );
    }

    #[test]
    fn lambda_variables_that_would_make_the_runtime_panic_are_refused() {
        let mut pairs = lambda_env(&[]);
        pairs.retain(|(name, _)| *name != "AWS_LAMBDA_FUNCTION_VERSION");
        assert_eq!(
            Adapter::from_env(env(&pairs)),
            Err(AdapterError::Missing { variable: "AWS_LAMBDA_FUNCTION_VERSION", adapter: "aws-lambda" })
        );
        let mut pairs = lambda_env(&[]);
        pairs[2] = ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots");
        assert!(Adapter::from_env(env(&pairs)).unwrap_err().to_string().contains("not a number of megabytes"));
        let mut pairs = lambda_env(&[]);
        pairs[0] = ("AWS_LAMBDA_RUNTIME_API", "not a host/port");
        assert!(Adapter::from_env(env(&pairs)).unwrap_err().to_string().contains("is not a host:port"));
    }

    #[test]
    fn the_runtime_api_for_init_errors_is_found_only_on_lambda() {
        assert_eq!(Adapter::lambda_runtime_api(env(&lambda_env(&[]))), Some("127.0.0.1:9001".to_owned()));
        assert_eq!(Adapter::lambda_runtime_api(env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")])), None);
        assert_eq!(Adapter::lambda_runtime_api(env(&[("AWS_LAMBDA_RUNTIME_API", "no/host")])), None);
    }

    #[test]
    fn invalid_ports_are_refused_with_the_value() {
        for value in ["abc", "0", "70000", ""] {
            let error = Adapter::from_env(env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", value)])).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("FUNCTIONS_CUSTOMHANDLER_PORT={value:?} is not a port number (1-65535)")
            );
        }
    }
}
