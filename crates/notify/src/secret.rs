//! Channel secrets (webhook URLs with tokens in their path, signing keys, SMTP passwords) and the scrubbing of
//! text that might echo one (a receiver's error page quoting the path it was called on).

use std::fmt;

use zeroize::Zeroizing;

/// A secret string: Debug and Display print `****`, and the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value, for the one place that must send it (a request URL, an HMAC key, an SMTP login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Pieces shorter than this are not scrubbed: replacing every `/` or `1` in a message would make it
/// unreadable, and a piece that short is not a credential.
const MIN_SCRUBBED_LEN: usize = 4;

/// The parts of one channel's configuration that must never reach a log line or an error message, so that text
/// from outside (an HTTP response body, an SMTP reply, a library's error) can be cleaned before it is shown.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    pieces: Vec<Secret>,
}

impl Scrubber {
    pub(crate) fn add(&mut self, piece: &str) {
        if piece.len() >= MIN_SCRUBBED_LEN && !self.pieces.iter().any(|p| p.expose() == piece) {
            self.pieces.push(Secret::new(piece));
            // Longest first, so a URL is replaced whole before its path is.
            self.pieces.sort_by_key(|p| std::cmp::Reverse(p.expose().len()));
        }
    }

    /// `text` with every secret piece replaced by `****`, on one line and at most `max_chars` long.
    pub(crate) fn clean(&self, text: &str, max_chars: usize) -> String {
        let mut out = text.to_owned();
        for piece in &self.pieces {
            out = out.replace(piece.expose(), "****");
        }
        let one_line: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > max_chars {
            let mut cut: String = one_line.chars().take(max_chars).collect();
            cut.push('…');
            cut
        } else {
            one_line
        }
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} pieces)", self.pieces.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s} {s:?}"), "**** ****");
        assert_eq!(s.expose(), "hunter2-hunter2");
    }

    #[test]
    fn scrubbing_replaces_whole_urls_before_their_parts_and_keeps_one_short_line() {
        let mut scrubber = Scrubber::default();
        scrubber.add("/services/T0/B0/XYZ");
        scrubber.add("https://hooks.example/services/T0/B0/XYZ");
        scrubber.add("/"); // too short to be a credential: ignored
        let text = "Cannot POST /services/T0/B0/XYZ\n(https://hooks.example/services/T0/B0/XYZ)";
        assert_eq!(scrubber.clean(text, 200), "Cannot POST **** (****)");
        assert_eq!(scrubber.clean("abcdefgh", 3), "abc…");
    }
}
