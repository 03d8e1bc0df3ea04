//! [`SecretString`]: how keyturn holds a secret value.

use std::fmt;

use zeroize::Zeroizing;

/// A secret value (a credential, a generated secret, a channel URL with a token in it).
///
/// Debug and Display print `****`, so a secret cannot reach a log line or an error message by accident;
/// the only way to the value is [`SecretString::expose`], which is easy to find in review. The memory is
/// wiped when the value is dropped. Clones are deliberate copies, each wiped on its own drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value itself: only for handing it to the service that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = SecretString::new("hunter2-correct-horse".to_owned());
        assert_eq!(format!("{secret}"), "****");
        assert_eq!(format!("{secret:?}"), "****");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(****)");
        assert_eq!(secret.expose(), "hunter2-correct-horse");
        assert_eq!(secret.len(), 21);
    }
}
