//! Keeping secrets out of logs and errors: Redis URLs are shown with the password
//! masked and without query strings, and server or client messages have the password
//! (raw and percent-decoded) replaced before they are stored or printed.

/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`; query strings
/// (which may carry credentials) are dropped.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "<unparseable URL>".to_string(),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority.rfind('@') {
        Some(i) => {
            let user = authority[..i].split(':').next().unwrap_or("");
            format!("{user}:***@{}", &authority[i + 1..])
        }
        None => authority.to_string(),
    };
    format!("{scheme}://{host}{path}")
}

/// The password part of a URL, if any (raw, as written).
pub fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = &authority[..authority.rfind('@')?];
    let pw = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    (!pw.is_empty()).then(|| pw.to_string())
}

/// Removes the password (raw and percent-decoded) from a message.
pub fn scrub_text(text: &str, password: Option<&str>) -> String {
    let Some(pw) = password else {
        return text.to_string();
    };
    let mut out = text.replace(pw, "***");
    let decoded = percent_decode(pw);
    if !decoded.is_empty() && decoded != pw {
        out = out.replace(&decoded, "***");
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://:***@10.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url("rediss://app:p%40ss@cache:6380?password=x"),
            "rediss://app:***@cache:6380"
        );
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("nonsense"), "<unparseable URL>");
        assert_eq!(url_password("redis://:s3cret@h").as_deref(), Some("s3cret"));
        assert_eq!(
            url_password("redis://u:p%40ss@h/0").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(url_password("redis://h:6379"), None);
    }

    #[test]
    fn messages_are_scrubbed() {
        assert_eq!(
            scrub_text("bad p@ss and p%40ss", Some("p%40ss")),
            "bad *** and ***"
        );
        assert_eq!(scrub_text("x", None), "x");
    }
}
