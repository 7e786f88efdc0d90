//! The subject patterns of federated credentials: `*` matches any run of
//! characters (including none); every other character matches itself. No
//! escapes, no `?`, no classes — a pattern an admin can read at a glance.

/// Whether `subject` matches `pattern`. Linear in practice and at worst
/// O(pattern × subject) (the classic greedy algorithm with one backtrack
/// point), so a hostile subject cannot make matching slow.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let subject: Vec<char> = subject.chars().collect();
    let (mut p, mut s) = (0, 0);
    // The position after the last `*` seen, and the subject position it
    // was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while s < subject.len() {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                backtrack = Some((p, s));
            }
            Some(&c) if c == subject[s] => {
                p += 1;
                s += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more character.
                Some((after_star, tried)) => {
                    p = after_star;
                    s = tried + 1;
                    backtrack = Some((after_star, tried + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(matches("spiffe://acme/agent", "spiffe://acme/agent"));
        assert!(!matches("spiffe://acme/agent", "spiffe://acme/agent2"));
        assert!(!matches("spiffe://acme/agent", "spiffe://acme/agen"));
        assert!(!matches("a", ""));
        // `?`, `[` and `.` have no special meaning.
        assert!(matches("a?b[c].d", "a?b[c].d"));
        assert!(!matches("a?b", "axb"));
    }

    #[test]
    fn star_matches_any_run_including_none() {
        let pattern = "system:serviceaccount:agents:*";
        assert!(matches(pattern, "system:serviceaccount:agents:planner"));
        assert!(matches(pattern, "system:serviceaccount:agents:"));
        assert!(matches(pattern, "system:serviceaccount:agents:a:b"));
        assert!(!matches(pattern, "system:serviceaccount:other:planner"));
        assert!(!matches(pattern, "system:serviceaccount:agents"));

        assert!(matches(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/web:ref:refs/heads/main"
        ));
        assert!(!matches(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/web:ref:refs/heads/dev"
        ));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(matches("a*b*c", "abcbc"));
        assert!(!matches("a*b*c", "acb"));
        assert!(matches("a**", "a"));
        assert!(matches("a*a*a", "aaaaa"));
        assert!(!matches("a*a*a", "aa"));
    }

    #[test]
    fn matches_characters_not_bytes() {
        assert!(matches("ü*ß", "üxß"));
        assert!(matches("a*", "a€"));
        assert!(!matches("é", "e"));
    }

    #[test]
    fn hostile_inputs_stay_fast() {
        let pattern = format!("a{}b", "*a".repeat(200));
        let subject = "a".repeat(4096);
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &subject));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
