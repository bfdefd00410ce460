//! Just enough of multipart/form-data (RFC 7578) to take a file out of an upload: parts
//! split on the boundary, each part's Content-Disposition `name`/`filename` and its
//! bytes, untouched (binary-safe). Anything malformed is an error, not a guess.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: Option<String>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// The boundary of a `multipart/form-data; boundary=…` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    if !it
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    it.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
    .filter(|b| !b.is_empty())
}

pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let first = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    if !body.starts_with(first.as_bytes()) {
        return Err("body does not start with the boundary".into());
    }
    let mut rest = &body[first.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts); // the closing delimiter
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("no CRLF after a boundary")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a part without a blank line")?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| "part headers not UTF-8")?;
        let body_start = head_end + 4;
        let len = find(&rest[body_start..], delim.as_bytes()).ok_or("a part without an end")?;
        parts.push(part(head, rest[body_start..body_start + len].to_vec()));
        rest = &rest[body_start + len + delim.len()..];
    }
}

fn part(head: &str, data: Vec<u8>) -> Part {
    let mut p = Part {
        name: None,
        filename: None,
        content_type: None,
        data,
    };
    for line in head.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("content-type") {
            p.content_type = Some(v.trim().to_string());
        } else if k.trim().eq_ignore_ascii_case("content-disposition") {
            for param in v.split(';').skip(1) {
                if let Some((pk, pv)) = param.split_once('=') {
                    let pv = pv.trim().trim_matches('"').to_string();
                    match pk.trim() {
                        "name" => p.name = Some(pv),
                        "filename" => p.filename = Some(pv),
                        _ => {}
                    }
                }
            }
        }
    }
    p
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_out_byte_for_byte() {
        let png = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 255];
        let mut body =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nabc\r\n".to_vec();
        body.extend(b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"chart.png\"\r\nContent-Type: image/png\r\n\r\n");
        body.extend(png);
        body.extend(b"\r\n--XyZ--\r\n");
        let b = boundary("multipart/form-data; boundary=\"XyZ\"").unwrap();
        let parts = parse(&body, &b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"abc");
        assert_eq!(parts[1].filename.as_deref(), Some("chart.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].data, png);
        assert!(parse(
            b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nno end",
            "XyZ"
        )
        .is_err());
        assert_eq!(boundary("application/octet-stream"), None);
    }
}
