//! Folding text to ASCII for search, in the projector rather than in Elasticsearch: the
//! Elasticsearch distribution on Maven Central has no `asciifolding` filter, and doing it
//! here gives the same results on every distribution.
//!
//! German umlauts are indexed both ways, so "Muller" and "Mueller" both find "Müller".

/// Lowercase ASCII with diacritics dropped: "Jürgen Müller" -> "jurgen muller".
pub fn ascii_fold(text: &str) -> String {
    deunicode::deunicode(text).to_lowercase()
}

/// The German transliteration, where it differs from plain folding:
/// "Müller" -> "mueller", "Straße" -> "strasse".
pub fn german_fold(text: &str) -> Option<String> {
    if !text
        .chars()
        .any(|c| matches!(c, 'ä' | 'ö' | 'ü' | 'Ä' | 'Ö' | 'Ü' | 'ß'))
    {
        return None;
    }
    let replaced: String = text
        .chars()
        .map(|c| match c {
            'ä' | 'Ä' => "ae".to_owned(),
            'ö' | 'Ö' => "oe".to_owned(),
            'ü' | 'Ü' => "ue".to_owned(),
            'ß' => "ss".to_owned(),
            other => other.to_string(),
        })
        .collect();
    let german = ascii_fold(&replaced);
    (german != ascii_fold(text)).then_some(german)
}

/// Every searchable form of `parts`, space-separated, for the `search_text` field.
pub fn search_text<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut forms = Vec::new();
    for part in parts {
        forms.push(ascii_fold(part));
        forms.extend(german_fold(part));
    }
    forms.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umlauts_fold_both_ways() {
        assert_eq!(ascii_fold("Jürgen Müller"), "jurgen muller");
        assert_eq!(
            german_fold("Jürgen Müller").as_deref(),
            Some("juergen mueller")
        );
        assert_eq!(german_fold("Ada"), None);
        assert_eq!(
            search_text(["Müller", "Straße 1"]),
            "muller mueller strasse 1"
        );
        assert_eq!(ascii_fold("François Ødegård"), "francois odegard");
    }
}
