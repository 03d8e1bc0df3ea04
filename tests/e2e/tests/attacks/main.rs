//! Issue 13's attacks ("tags choose, the deployment authorizes") through the real handler binaries on the
//! local stack: each asserts that nothing outside the attacker's own object changed, that the refusal is a
//! permanent, clear outcome with a warning notification, and that what the writer may legitimately ask for
//! keeps working beside it. docs/security.md lists which line each test proves.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bindings;
