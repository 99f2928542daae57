//! Helpers for precise errors in hand-written files (the configuration and the route policy):
//! where an offset is, as a person counts it, and which known key a misspelt one meant.

/// The 1-based line and column (in characters) of byte `offset` in `text`. An offset past the
/// end or inside a character is moved back to the nearest character boundary.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// The candidate closest to `wrong` (ignoring ASCII case) if it is at most `max_distance` edits
/// away: close enough to be a typo.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>, max_distance: usize) -> Option<&'a str> {
    let wrong = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wrong, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= max_distance)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        assert_eq!(position("a = 1\nb = 2", 0), (1, 1));
        assert_eq!(position("a = 1\nb = 2", 6), (2, 1));
        assert_eq!(position("é = 1", 4), (1, 4));
        assert_eq!(position("é", 1), (1, 1));
        assert_eq!(position("ab", 99), (1, 3));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("prefx", "prefix"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn suggestions_are_close_typos_only_whatever_the_case() {
        let keys = ["method", "path", "sensitivity"];
        assert_eq!(suggest("methd", keys, 2), Some("method"));
        assert_eq!(suggest("SENSITIVTY", keys, 2), Some("sensitivity"));
        assert_eq!(suggest("color", keys, 2), None);
        assert_eq!(suggest("pth", keys, 0), None);
    }
}
