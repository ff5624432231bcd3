//! Input checks shared by every resource. Each error names the field and the reason.

use stratus_api::PasswordPolicy;

use crate::error::{Error, Result};

pub const NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 1024;

/// A display name: 1–64 characters (any script), no control characters, not blank.
pub fn name(field: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if s.chars().count() > NAME_MAX {
        return Err(Error::invalid(
            field,
            &format!("must be at most {NAME_MAX} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if s.trim() != s {
        return Err(Error::invalid(field, "must not start or end with spaces"));
    }
    Ok(())
}

pub fn description(field: &str, s: &str) -> Result<()> {
    if s.chars().count() > DESCRIPTION_MAX {
        return Err(Error::invalid(
            field,
            &format!("must be at most {DESCRIPTION_MAX} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// A login name: 2–64 of `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit.
pub fn login_name(field: &str, s: &str) -> Result<()> {
    let n = s.chars().count();
    if !(2..=64).contains(&n) {
        return Err(Error::invalid(field, "must be 2 to 64 characters"));
    }
    if !s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(field, "must start with a letter or digit"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    {
        return Err(Error::invalid(
            field,
            "may contain only letters, digits and . _ @ -",
        ));
    }
    Ok(())
}

pub fn email(field: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    let ok = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be an email address like name@example.gov.cn",
        ))
    }
}

pub fn password(field: &str, pw: &str, policy: &PasswordPolicy, login: &str) -> Result<()> {
    let n = pw.chars().count();
    if n < policy.min_length as usize {
        return Err(Error::invalid(
            field,
            &format!("must be at least {} characters", policy.min_length),
        ));
    }
    if n > 128 {
        return Err(Error::invalid(field, "must be at most 128 characters"));
    }
    let checks = [
        (
            policy.require_upper,
            pw.chars().any(|c| c.is_uppercase()),
            "an upper-case letter",
        ),
        (
            policy.require_lower,
            pw.chars().any(|c| c.is_lowercase()),
            "a lower-case letter",
        ),
        (
            policy.require_digit,
            pw.chars().any(|c| c.is_ascii_digit()),
            "a digit",
        ),
        (
            policy.require_symbol,
            pw.chars()
                .any(|c| !c.is_alphanumeric() && !c.is_whitespace()),
            "a symbol",
        ),
    ];
    for (required, present, what) in checks {
        if required && !present {
            return Err(Error::invalid(field, &format!("must contain {what}")));
        }
    }
    if !login.is_empty() && pw.to_lowercase().contains(&login.to_lowercase()) {
        return Err(Error::invalid(field, "must not contain the login name"));
    }
    Ok(())
}

pub fn policy(p: &PasswordPolicy) -> Result<()> {
    if !(8..=128).contains(&p.min_length) {
        return Err(Error::invalid("min_length", "must be between 8 and 128"));
    }
    if !(1..=100).contains(&p.max_failed_logins) {
        return Err(Error::invalid(
            "max_failed_logins",
            "must be between 1 and 100",
        ));
    }
    if !(1..=10080).contains(&p.lockout_minutes) {
        return Err(Error::invalid(
            "lockout_minutes",
            "must be between 1 and 10080",
        ));
    }
    if !(5..=10080).contains(&p.session_minutes) {
        return Err(Error::invalid(
            "session_minutes",
            "must be between 5 and 10080",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("name", "数字政府 平台").is_ok());
        assert!(name("name", "")
            .unwrap_err()
            .to_string()
            .starts_with("name: "));
        assert!(name("name", " x").is_err());
        assert!(name("name", &"x".repeat(65)).is_err());
        assert!(name("name", "a\u{0}b").is_err());
        assert!(login_name("name", "zhang.san@gd").is_ok());
        assert!(login_name("name", "-x").is_err());
        assert!(email("email", "a@b.cn").is_ok());
        assert!(email("email", "a@b").is_err());
    }

    #[test]
    fn passwords_follow_policy() {
        let p = PasswordPolicy::default();
        assert!(password("password", "Abcdefgh12", &p, "bob").is_ok());
        assert!(password("password", "abcdefgh12", &p, "bob")
            .unwrap_err()
            .to_string()
            .contains("upper-case"));
        assert!(password("password", "Ab1", &p, "bob")
            .unwrap_err()
            .to_string()
            .contains("at least 10"));
        assert!(password("password", "Bobbobbob12", &p, "bob")
            .unwrap_err()
            .to_string()
            .contains("login name"));
    }
}
