//! Repository names and tags, as the OCI distribution spec spells them.
//!
//! A repository name is one or more components separated by `/`, each
//! matching `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most 255 characters in
//! all. A tag matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. The matchers are
//! written by hand: they are small, allocation-free, and cannot backtrack.
//!
//! Because the alphabet has no `%`, `\`, NUL or upper case, and every
//! component must start and end with an alphanumeric, a valid name can never
//! be `.`, `..`, empty, or smuggle a path separator in any encoding.

/// The longest repository name the spec allows.
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag the spec allows.
pub const MAX_TAG_LEN: usize = 128;

/// Why a repository name is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("repository name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("repository name is {len} characters long, more than {MAX_NAME_LEN}")]
    TooLong { len: usize },
    /// One `/`-separated component breaks the grammar.
    #[error("repository name {name:?}: invalid component {component:?} (lowercase letters, digits and single separators . _ __ -)")]
    Component { name: String, component: String },
}

/// Why a tag is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// The tag is empty.
    #[error("tag is empty")]
    Empty,
    /// The tag is longer than [`MAX_TAG_LEN`].
    #[error("tag is {len} characters long, more than {MAX_TAG_LEN}")]
    TooLong { len: usize },
    /// The tag holds a character outside the grammar.
    #[error("tag {tag:?}: only letters, digits, _ . - allowed, not starting with . or -")]
    Invalid { tag: String },
}

/// Checks a repository name such as `library/nginx`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    match name.split('/').find(|c| !is_component(c)) {
        Some(component) => Err(NameError::Component { name: name.to_owned(), component: component.to_owned() }),
        None => Ok(()),
    }
}

/// Checks a tag such as `1.25-alpine`.
pub fn validate_tag(tag: &str) -> Result<(), TagError> {
    let bytes = tag.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(TagError::Empty);
    };
    if bytes.len() > MAX_TAG_LEN {
        return Err(TagError::TooLong { len: bytes.len() });
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if !word(first) || !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(TagError::Invalid { tag: tag.to_owned() });
    }
    Ok(())
}

/// Whether `s` is one path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_component(s: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut rest = s.as_bytes();
    loop {
        // One run of [a-z0-9]+.
        let run = rest.iter().take_while(|b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        // Then either the end, or a separator followed by another run.
        let sep = match rest {
            [] => return true,
            [b'.', ..] => 1,
            [b'_', b'_', ..] => 2,
            [b'_', ..] => 1,
            [b'-', ..] => rest.iter().take_while(|&&b| b == b'-').count(),
            _ => return false,
        };
        rest = &rest[sep..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        for good in ["a", "nginx", "a0", "0", "a.b", "a_b", "a__b", "a-b", "a--b", "a---b", "a.b_c__d-e", "v1.2"] {
            assert!(is_component(good), "{good} rejected");
        }
        for bad in [
            "", ".", "..", "A", "Nginx", "a.", ".a", "a_", "_a", "a-", "-a", "a..b", "a___b", "a._b", "a-_b", "a_-b",
            "a b", "a%2fb", "a%2Fb", "a\\b", "a\0b", "a/b", "é", "a:b", "a@b", "a+b",
        ] {
            assert!(!is_component(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn names() {
        for good in ["library/nginx", "a", "a/b/c/d", "foo-bar/baz_qux", "ghcr.io/x"] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        assert_eq!(validate_name(""), Err(NameError::Empty));
        for bad in ["/a", "a/", "a//b", "a/../b", "a/./b", "..", "Library/nginx", "a/B", "a%2Fb", "a\\b", "a\0"] {
            assert!(matches!(validate_name(bad), Err(NameError::Component { .. })), "{bad:?} accepted");
        }
    }

    #[test]
    fn name_length_limit() {
        let at_limit = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        assert_eq!(at_limit.len(), 255);
        assert_eq!(validate_name(&at_limit), Ok(()));
        let over = format!("{at_limit}c");
        assert_eq!(validate_name(&over), Err(NameError::TooLong { len: 256 }));
    }

    #[test]
    fn tags() {
        for good in ["latest", "1.25", "1.25-alpine", "_x", "A", "v1.0.0_rc-1", "a..b", "0"] {
            assert_eq!(validate_tag(good), Ok(()), "{good}");
        }
        assert_eq!(validate_tag(""), Err(TagError::Empty));
        for bad in [".hidden", "-x", "a/b", "a:b", "a@b", "a b", "a%2F", "é", "a+b"] {
            assert!(matches!(validate_tag(bad), Err(TagError::Invalid { .. })), "{bad:?} accepted");
        }
    }

    #[test]
    fn tag_length_limit() {
        assert_eq!(validate_tag(&"a".repeat(128)), Ok(()));
        assert_eq!(validate_tag(&"a".repeat(129)), Err(TagError::TooLong { len: 129 }));
    }
}
