//! `SHOW GRANTS` lines, parsed (never regex-replaced): what makes a login too powerful for keyturn to change,
//! whether a `_clone` carries exactly its base's grants, and the same grants replayed for a new clone.
//!
//! Both MySQL 8 and MariaDB print an account as two quoted names joined by `@` (`` `app`@`%` ``), and a MariaDB
//! line may carry the password hash (`IDENTIFIED BY PASSWORD '*…'`). A line is split into tokens that respect
//! both quote styles, so a name holding a quote or the word `TO` cannot be mistaken for syntax.

/// One token of a statement, with its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word or symbol run (`GRANT`, `SELECT`, `*.*`, `` `db`.* `` is three tokens: ident, `.*` word).
    Word(String),
    /// A backtick-quoted identifier, unquoted.
    Ident(String),
    /// A single-quoted string, unquoted.
    Str(String),
    /// One of `@ , ( )`.
    Punct(char),
}

/// A `SHOW GRANTS` line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the grant line '{0}'")]
pub(crate) struct GrantParseError(String);

/// An account: `'user'@'host'`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Account {
    pub(crate) user: String,
    /// Empty for a MariaDB role.
    pub(crate) host: String,
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}'@'{}'", self.user, self.host)
    }
}

impl Account {
    /// The account as a statement names it: two string literals (a role without a host: one).
    pub(crate) fn quoted(&self) -> Result<String, String> {
        if self.host.is_empty() {
            return literal(&self.user);
        }
        Ok(format!("{}@{}", literal(&self.user)?, literal(&self.host)?))
    }
}

/// `value` as a string literal that reads the same whatever the session's `sql_mode`: a quote is doubled and a
/// backslash refused (with `NO_BACKSLASH_ESCAPES` off it would escape; on, it would not). Control characters are
/// refused too. The error names the problem, never the value (which may be a password).
pub(crate) fn literal(value: &str) -> Result<String, String> {
    if value.chars().any(|c| c == '\\' || c.is_control()) {
        return Err("a name or password holds a backslash or a control character, which keyturn does not put in a \
                    statement"
            .to_owned());
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

fn tokenize(line: &str) -> Result<Vec<Token>, GrantParseError> {
    let bad = || GrantParseError(redacted(line));
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '`' | '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(bad()),
                        Some('\\') if c == '\'' => text.push(chars.next().ok_or_else(bad)?),
                        Some(q) if q == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                                text.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(other) => text.push(other),
                    }
                }
                tokens.push(if c == '`' { Token::Ident(text) } else { Token::Str(text) });
            }
            '@' | ',' | '(' | ')' => {
                chars.next();
                tokens.push(Token::Punct(c));
            }
            _ => {
                let mut word = String::new();
                while let Some(&w) = chars.peek() {
                    if w.is_whitespace() || matches!(w, '`' | '\'' | '@' | ',' | '(' | ')') {
                        break;
                    }
                    word.push(w);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// The line with every quoted string blanked: MariaDB's lines carry the password hash, which no error may show.
fn redacted(line: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    for c in line.chars() {
        if c == '\'' {
            in_string = !in_string;
            out.push(c);
        } else if !in_string {
            out.push(c);
        }
    }
    out
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// The account starting at `tokens[i]`, and how many tokens it spans.
fn account_at(tokens: &[Token], i: usize) -> Option<(Account, usize)> {
    let user = match tokens.get(i)? {
        Token::Ident(s) | Token::Str(s) => s.clone(),
        _ => return None,
    };
    match (tokens.get(i + 1), tokens.get(i + 2)) {
        (Some(Token::Punct('@')), Some(Token::Ident(host) | Token::Str(host))) => {
            Some((Account { user, host: host.clone() }, 3))
        }
        _ => Some((Account { user, host: String::new() }, 1)),
    }
}

/// One `SHOW GRANTS` line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantLine {
    tokens: Vec<Token>,
}

/// What one line gives its grantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// `GRANT <privileges> ON <level> TO …`: the privileges upper-cased, the level as printed.
    Privileges { privileges: Vec<String>, level: String, grant_option: bool },
    /// `GRANT <role>[, <role>] TO …`.
    Roles(Vec<Account>),
    /// Anything else (`SET DEFAULT ROLE …`, `GRANT PROXY …`): replayed as it is, gives no power keyturn checks.
    Other,
}

impl GrantLine {
    pub(crate) fn parse(line: &str) -> Result<Self, GrantParseError> {
        let tokens = tokenize(line)?;
        if tokens.is_empty() {
            return Err(GrantParseError(String::new()));
        }
        Ok(Self { tokens })
    }

    /// What the line grants.
    pub(crate) fn grant(&self) -> Grant {
        let t = &self.tokens;
        if !is_word(t.first(), "GRANT") {
            return Grant::Other;
        }
        let on = t.iter().position(|tok| is_word(Some(tok), "ON"));
        let to = t.iter().position(|tok| is_word(Some(tok), "TO"));
        match (on, to) {
            (Some(on), Some(to)) if on < to => {
                if is_word(t.get(1), "PROXY") {
                    return Grant::Other;
                }
                // Privileges are words separated by commas; a column list in parentheses belongs to the one
                // before it.
                let mut privileges = Vec::new();
                let mut current: Vec<&str> = Vec::new();
                let mut depth = 0;
                for token in &t[1..on] {
                    match token {
                        Token::Punct('(') => depth += 1,
                        Token::Punct(')') => depth -= 1,
                        Token::Punct(',') if depth == 0 => {
                            privileges.push(current.join(" ").to_ascii_uppercase());
                            current.clear();
                        }
                        Token::Word(w) if depth == 0 => current.push(w),
                        _ => {}
                    }
                }
                if !current.is_empty() {
                    privileges.push(current.join(" ").to_ascii_uppercase());
                }
                let level = t[on + 1..to]
                    .iter()
                    .map(|tok| match tok {
                        Token::Ident(s) => format!("`{s}`"),
                        Token::Word(w) => w.clone(),
                        Token::Str(s) => format!("'{s}'"),
                        Token::Punct(p) => p.to_string(),
                    })
                    .collect::<String>();
                let grant_option = t.windows(3).any(|w| {
                    is_word(Some(&w[0]), "WITH") && is_word(Some(&w[1]), "GRANT") && is_word(Some(&w[2]), "OPTION")
                });
                Grant::Privileges { privileges, level, grant_option }
            }
            (None, Some(to)) => {
                let mut roles = Vec::new();
                let mut i = 1;
                while i < to {
                    match account_at(t, i) {
                        Some((role, span)) => {
                            roles.push(role);
                            i += span;
                        }
                        None => i += 1,
                    }
                }
                Grant::Roles(roles)
            }
            _ => Grant::Other,
        }
    }

    /// Why this line makes its grantee too powerful to be a rotated login, if it does: SUPER, CREATE USER,
    /// ALL PRIVILEGES or GRANT OPTION on `*.*`, or a write privilege on the `mysql` schema (whose grant tables
    /// hold every account: writing them is CREATE USER by another name).
    pub(crate) fn power(&self) -> Option<String> {
        let Grant::Privileges { privileges, level, grant_option } = self.grant() else { return None };
        let global = level == "*.*";
        let grant_tables = level.starts_with("`mysql`.");
        let mut found: Vec<String> = privileges
            .iter()
            .filter(|p| {
                let p = p.as_str();
                (global && matches!(p, "ALL" | "ALL PRIVILEGES" | "SUPER" | "CREATE USER"))
                    || (grant_tables && matches!(p, "ALL" | "ALL PRIVILEGES" | "INSERT" | "UPDATE" | "DELETE"))
            })
            .cloned()
            .collect();
        if global && grant_option {
            found.push("GRANT OPTION".to_owned());
        }
        (!found.is_empty()).then(|| format!("{} ON {level}", found.join(", ")))
    }

    /// The line with `account` as `<login>` and MariaDB's `IDENTIFIED BY PASSWORD '…'` left out: two logins'
    /// lines are the same grant when these are equal.
    pub(crate) fn normalized(&self, account: &Account) -> String {
        self.render(account, "<login>", false).unwrap_or_default()
    }

    /// The statement that gives `to` what this line gives `from`, or `None` when the line names no `from`.
    pub(crate) fn replayed(&self, from: &Account, to: &Account) -> Result<Option<String>, String> {
        let quoted = to.quoted()?;
        let statement = self.render(from, &quoted, true)?;
        Ok(statement.contains(&quoted).then_some(statement))
    }

    /// The tokens joined back into a statement, with `account` replaced by `replacement` and the password
    /// clause dropped. `quote`: quote names for the server (else they are shown with backticks, for comparing).
    fn render(&self, account: &Account, replacement: &str, quote: bool) -> Result<String, String> {
        let t = &self.tokens;
        let mut parts: Vec<String> = Vec::new();
        let mut i = 0;
        while i < t.len() {
            if is_word(t.get(i), "IDENTIFIED")
                && is_word(t.get(i + 1), "BY")
                && is_word(t.get(i + 2), "PASSWORD")
                && matches!(t.get(i + 3), Some(Token::Str(_)))
            {
                i += 4;
                continue;
            }
            if let Some((found, span)) = account_at(t, i)
                && span == 3
                && &found == account
            {
                parts.push(replacement.to_owned());
                i += span;
                continue;
            }
            let text = match &t[i] {
                Token::Word(w) => w.clone(),
                Token::Punct(p) => p.to_string(),
                Token::Ident(s) => format!("`{}`", s.replace('`', "``")),
                Token::Str(s) if quote => literal(s)?,
                Token::Str(s) => format!("'{s}'"),
            };
            parts.push(text);
            i += 1;
        }
        // Tokens were split on punctuation; join them back without spaces around it, so `db`.* and
        // `a`@`b` read as the server wrote them.
        let mut out = String::new();
        for (index, part) in parts.iter().enumerate() {
            let glued =
                index > 0 && (part.starts_with(['@', '.', ')', ',']) || parts[index - 1].ends_with(['@', '(', '.']));
            if index > 0 && !glued {
                out.push(' ');
            }
            out.push_str(part);
        }
        Ok(out)
    }
}

/// Whether `name` may be a MySQL login keyturn manages: printable, no quote characters, within MySQL's limit.
pub(crate) fn valid_login(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| !c.is_control() && !matches!(c, '\'' | '`' | '\\' | '"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Account {
        Account { user: "app".to_owned(), host: "%".to_owned() }
    }

    #[test]
    fn powers_are_found_on_star_star_and_the_grant_tables_only() {
        for (line, power) in [
            (
                "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
                Some("ALL PRIVILEGES, GRANT OPTION ON *.*"),
            ),
            ("GRANT SELECT, SUPER ON *.* TO `app`@`%`", Some("SUPER ON *.*")),
            ("GRANT RELOAD, CREATE USER ON *.* TO `app`@`%`", Some("CREATE USER ON *.*")),
            ("GRANT USAGE ON *.* TO `app`@`%` WITH GRANT OPTION", Some("GRANT OPTION ON *.*")),
            ("GRANT UPDATE ON `mysql`.* TO `app`@`%`", Some("UPDATE ON `mysql`.*")),
            ("GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*ABC' REQUIRE SSL", None),
            ("GRANT ALL PRIVILEGES ON `shop`.* TO `app`@`%` WITH GRANT OPTION", None),
            ("GRANT SELECT (`id`, `name`), INSERT ON `shop`.`t` TO `app`@`%`", None),
            ("GRANT `reporting` TO `app`@`%`", None),
        ] {
            assert_eq!(GrantLine::parse(line).unwrap().power().as_deref(), power, "{line}");
        }
    }

    #[test]
    fn roles_and_privileges_are_read_from_both_servers_spellings() {
        let mariadb = GrantLine::parse("GRANT `reporting`, `audit` TO `app`@`%`").unwrap();
        assert_eq!(
            mariadb.grant(),
            Grant::Roles(vec![
                Account { user: "reporting".to_owned(), host: String::new() },
                Account { user: "audit".to_owned(), host: String::new() }
            ])
        );
        let mysql = GrantLine::parse("GRANT `reporting`@`%` TO `app`@`%`").unwrap();
        assert_eq!(mysql.grant(), Grant::Roles(vec![Account { user: "reporting".to_owned(), host: "%".to_owned() }]));
        let columns = GrantLine::parse("GRANT SELECT (`a`, `b`), INSERT ON `shop`.`t` TO `app`@`%`").unwrap();
        assert_eq!(
            columns.grant(),
            Grant::Privileges {
                privileges: vec!["SELECT".to_owned(), "INSERT".to_owned()],
                level: "`shop`.`t`".to_owned(),
                grant_option: false
            }
        );
    }

    #[test]
    fn replaying_swaps_the_grantee_and_drops_the_password_hash() {
        let clone = Account { user: "app_clone".to_owned(), host: "%".to_owned() };
        let line =
            GrantLine::parse("GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*3A2A44' REQUIRE SSL").unwrap();
        assert_eq!(
            line.replayed(&app(), &clone).unwrap().unwrap(),
            "GRANT USAGE ON *.* TO 'app_clone'@'%' REQUIRE SSL"
        );
        assert_eq!(line.normalized(&app()), "GRANT USAGE ON *.* TO <login> REQUIRE SSL");
        let select = GrantLine::parse("GRANT SELECT, INSERT ON `shop`.* TO `app`@`%`").unwrap();
        assert_eq!(
            select.replayed(&app(), &clone).unwrap().unwrap(),
            "GRANT SELECT, INSERT ON `shop`.* TO 'app_clone'@'%'"
        );
        let columns = GrantLine::parse("GRANT SELECT (`id`) ON `shop`.`t` TO `app`@`%`").unwrap();
        assert_eq!(
            columns.replayed(&app(), &clone).unwrap().unwrap(),
            "GRANT SELECT (`id`) ON `shop`.`t` TO 'app_clone'@'%'"
        );
        // A name that looks like syntax stays a name.
        let tricky = GrantLine::parse("GRANT SELECT ON `to`.* TO `app`@`%`").unwrap();
        assert_eq!(tricky.normalized(&app()), "GRANT SELECT ON `to`.* TO <login>");
        let other = Account { user: "someone".to_owned(), host: "%".to_owned() };
        assert_eq!(select.replayed(&other, &clone).unwrap(), None, "a line for another account is not replayed");
    }

    #[test]
    fn literals_double_quotes_and_refuse_backslashes_without_showing_the_value() {
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        let error = literal("hunter\\2").unwrap_err();
        assert!(!error.contains("hunter"), "{error}");
        assert!(literal("a\nb").is_err());
        assert!(valid_login("app_clone") && !valid_login("a'b") && !valid_login(""));
        let error = GrantLine::parse("GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*SECRET").unwrap_err();
        assert!(!error.to_string().contains("SECRET"), "{error}");
    }
}
