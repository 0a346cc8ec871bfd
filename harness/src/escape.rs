//! The one escape for text put into HTML (reports) and XML (JUnit): both need the same
//! characters replaced, in text and in quoted attributes.

/// `s` safe inside HTML/XML text and double- or single-quoted attributes.
pub fn esc(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}
