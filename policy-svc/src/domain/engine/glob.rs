//! Resource, action and audience patterns (policy.proto: `*` matches any run
//! of characters, including `/` and none; every other character is literal),
//! and the index key a pattern is filed under.

/// Characters after which the index cuts a pattern's literal prefix.
pub const INDEX_DELIMITERS: [char; 2] = [':', '/'];

/// A compiled pattern: the literal pieces between the stars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Box<str>,
    /// The pieces between stars; one piece means "no star" (exact match).
    pieces: Vec<Box<str>>,
}

/// Where the index files a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKey<'a> {
    /// No star: only this exact value matches.
    Exact(&'a str),
    /// Every value that matches starts with this prefix, which is empty or
    /// ends with an [`INDEX_DELIMITERS`] character.
    Prefix(&'a str),
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.into(),
            pieces: pattern.split('*').map(Into::into).collect(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn is_literal(&self) -> bool {
        self.pieces.len() == 1
    }

    /// True when the pattern matches every value (only stars).
    pub fn matches_everything(&self) -> bool {
        self.pieces.len() > 1 && self.pieces.iter().all(|piece| piece.is_empty())
    }

    /// True when the pattern matches every value, or every value of one
    /// scheme: `*`, `**`, `mcp:*`, `mcp:*/*` (only stars and slashes after
    /// the first `:`).
    pub fn matches_a_whole_scheme(&self) -> bool {
        if self.matches_everything() {
            return true;
        }
        let Some((scheme, rest)) = self.pattern.split_once(':') else {
            return false;
        };
        !scheme.contains('*') && rest.contains('*') && rest.chars().all(|c| c == '*' || c == '/')
    }

    pub fn matches(&self, value: &str) -> bool {
        let [first, middle @ .., last] = self.pieces.as_slice() else {
            // One piece: no star.
            return self.pieces.first().is_some_and(|only| **only == *value);
        };
        if value.len() < first.len() + last.len()
            || !value.starts_with(&**first)
            || !value.ends_with(&**last)
        {
            return false;
        }
        // Leftmost-first placement of each middle piece is optimal for
        // star-only globs: a later placement never leaves more room.
        let mut rest = &value[first.len()..value.len() - last.len()];
        for piece in middle {
            if piece.is_empty() {
                continue;
            }
            match rest.find(&**piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }

    /// The key the index files this pattern under.
    pub fn index_key(&self) -> IndexKey<'_> {
        if self.is_literal() {
            return IndexKey::Exact(&self.pattern);
        }
        let literal = &*self.pieces[0];
        let cut = literal.rfind(INDEX_DELIMITERS).map_or(0, |at| at + 1);
        IndexKey::Prefix(&literal[..cut])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run_including_slash_and_none() {
        let glob = Glob::new("mcp:github/*");
        assert!(glob.matches("mcp:github/create_issue"));
        assert!(glob.matches("mcp:github/"));
        assert!(glob.matches("mcp:github/a/b"));
        assert!(!glob.matches("mcp:gitlab/x"));
        let delete = Glob::new("mcp:*/delete_*");
        assert!(delete.matches("mcp:github/delete_repo"));
        assert!(delete.matches("mcp:a/b/delete_"));
        assert!(!delete.matches("mcp:github/create_repo"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("abc"));
        assert!(Glob::new("a*b*c").matches("axxbyybc"));
        assert!(!Glob::new("a*b*c").matches("acb"));
        assert!(!Glob::new("ab*ba").matches("aba"));
        assert!(Glob::new("read").matches("read"));
        assert!(!Glob::new("read").matches("reads"));
    }

    #[test]
    fn other_characters_are_literal() {
        assert!(Glob::new("a?c").matches("a?c"));
        assert!(!Glob::new("a?c").matches("abc"));
        assert!(Glob::new("[x]").matches("[x]"));
    }

    #[test]
    fn match_all_patterns_are_recognised() {
        assert!(Glob::new("*").matches_everything());
        assert!(Glob::new("**").matches_a_whole_scheme());
        assert!(Glob::new("mcp:*").matches_a_whole_scheme());
        assert!(Glob::new("mcp:*/*").matches_a_whole_scheme());
        assert!(!Glob::new("mcp:github/*").matches_a_whole_scheme());
        assert!(!Glob::new("mcp:*/delete_*").matches_a_whole_scheme());
        assert!(!Glob::new("*:x").matches_a_whole_scheme());
        assert!(!Glob::new("mcp:").matches_a_whole_scheme());
    }

    #[test]
    fn index_keys_cut_the_literal_prefix_at_a_delimiter() {
        assert_eq!(
            Glob::new("mcp:github/x").index_key(),
            IndexKey::Exact("mcp:github/x")
        );
        assert_eq!(
            Glob::new("mcp:github/*").index_key(),
            IndexKey::Prefix("mcp:github/")
        );
        assert_eq!(
            Glob::new("mcp:github/get_*").index_key(),
            IndexKey::Prefix("mcp:github/")
        );
        assert_eq!(
            Glob::new("mcp:*/delete_*").index_key(),
            IndexKey::Prefix("mcp:")
        );
        assert_eq!(Glob::new("repo*").index_key(), IndexKey::Prefix(""));
        assert_eq!(Glob::new("*").index_key(), IndexKey::Prefix(""));
    }
}
