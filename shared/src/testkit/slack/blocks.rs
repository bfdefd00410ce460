//! Block Kit checks for a message's `blocks`, with Slack's own wording for the errors
//! (`invalid_blocks` carries `"<reason> [json-pointer:/blocks/0/text/text]"` lines, as the
//! real API answers). The limits, from Slack's Block Kit reference
//! (docs.slack.dev/reference/block-kit/…):
//! - blocks: "You can include up to 50 blocks in each message" (…/blocks).
//! - every block: `block_id` at most 255 characters, unique in the message.
//! - section: `text` at most 3000 characters; `fields` at most 10 items of at most 2000
//!   characters each; `fields` "required if no text is provided" (…/section-block).
//! - header: `text` is plain_text of at most 150 characters (…/header-block).
//! - context: `elements` 1 to 10 items (…/context-block).
//! - image: `alt_text` required, at most 2000; `image_url` at most 3000 or a
//!   `slack_file`; `title` plain_text at most 2000 (…/image-block).
//! - actions: at most 25 `elements` (…/actions-block).
//! - markdown: `text` at most 12,000 characters (…/markdown-block).
//! - text objects: `type` plain_text or mrkdwn, `text` at least 1 character; `emoji`
//!   only on plain_text (…/composition-objects/text-object).
//!
//! Characters are Unicode scalar values, as Slack counts them.

use serde_json::{Map, Value};

pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_SECTION_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
pub const MAX_ACTIONS_ELEMENTS: usize = 25;
pub const MAX_MARKDOWN_TEXT: usize = 12_000;
pub const MAX_BLOCK_ID: usize = 255;
const MAX_IMAGE_URL: usize = 3000;
const MAX_ALT_TEXT: usize = 2000;

/// The block types a message may carry.
const MESSAGE_BLOCKS: [&str; 10] = [
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "markdown",
    "rich_text",
    "section",
    "video",
];

/// Every rule `blocks` breaks, as Slack words them; empty when it is valid.
pub fn check(blocks: &Value) -> Vec<String> {
    let mut errs = Errors::default();
    let Some(list) = blocks.as_array() else {
        errs.add("must be an array", "/blocks");
        return errs.0;
    };
    if list.len() > MAX_BLOCKS {
        errs.add(
            &format!("must provide an array of no more than {MAX_BLOCKS} items"),
            "/blocks",
        );
    }
    let mut ids = std::collections::HashSet::new();
    for (i, block) in list.iter().enumerate() {
        let at = format!("/blocks/{i}");
        let Some(b) = block.as_object() else {
            errs.add("must be an object", &at);
            continue;
        };
        if let Some(id) = b.get("block_id") {
            match id.as_str() {
                Some(s) if chars(s) > MAX_BLOCK_ID => {
                    errs.too_long(MAX_BLOCK_ID, &format!("{at}/block_id"))
                }
                Some(s) if !ids.insert(s.to_string()) => {
                    errs.add("duplicate block_id", &format!("{at}/block_id"))
                }
                Some(_) => {}
                None => errs.add("must be a string", &format!("{at}/block_id")),
            }
        }
        match b.get("type").and_then(Value::as_str) {
            None => errs.add("missing required field: type", &at),
            Some(t) if !MESSAGE_BLOCKS.contains(&t) => {
                errs.add("must be a valid enum value", &format!("{at}/type"))
            }
            Some("section") => section(b, &at, &mut errs),
            Some("header") => {
                text_field(b, "text", &at, MAX_HEADER_TEXT, true, &mut errs);
            }
            Some("context") => {
                list_field(b, "elements", &at, 1, MAX_CONTEXT_ELEMENTS, &mut errs);
            }
            Some("actions") => {
                list_field(b, "elements", &at, 1, MAX_ACTIONS_ELEMENTS, &mut errs);
            }
            Some("image") => image(b, &at, &mut errs),
            Some("markdown") => match b.get("text").and_then(Value::as_str) {
                None => errs.add("missing required field: text", &at),
                Some(s) if chars(s) > MAX_MARKDOWN_TEXT => {
                    errs.too_long(MAX_MARKDOWN_TEXT, &format!("{at}/text"))
                }
                Some(_) => {}
            },
            Some("rich_text") => {
                list_field(b, "elements", &at, 1, usize::MAX, &mut errs);
            }
            Some(_) => {} // divider, file, video: nothing the report sends
        }
    }
    errs.0
}

fn section(b: &Map<String, Value>, at: &str, errs: &mut Errors) {
    let has_text = b.contains_key("text");
    if has_text {
        text_field(b, "text", at, MAX_SECTION_TEXT, false, errs);
    }
    match b.get("fields") {
        None if !has_text => errs.add("missing required field: text or fields", at),
        None => {}
        Some(Value::Array(fields)) => {
            if fields.len() > MAX_SECTION_FIELDS {
                errs.add(
                    &format!("must provide an array of no more than {MAX_SECTION_FIELDS} items"),
                    &format!("{at}/fields"),
                );
            }
            if fields.is_empty() && !has_text {
                errs.add("must provide at least 1 item", &format!("{at}/fields"));
            }
            for (j, f) in fields.iter().enumerate() {
                text_object(f, &format!("{at}/fields/{j}"), MAX_FIELD_TEXT, false, errs);
            }
        }
        Some(_) => errs.add("must be an array", &format!("{at}/fields")),
    }
}

fn image(b: &Map<String, Value>, at: &str, errs: &mut Errors) {
    match (b.get("image_url"), b.get("slack_file")) {
        (None, None) => errs.add("missing required field: image_url or slack_file", at),
        (Some(u), _) => match u.as_str() {
            Some(s) if chars(s) > MAX_IMAGE_URL => {
                errs.too_long(MAX_IMAGE_URL, &format!("{at}/image_url"))
            }
            Some(_) => {}
            None => errs.add("must be a string", &format!("{at}/image_url")),
        },
        (None, Some(_)) => {}
    }
    match b.get("alt_text").and_then(Value::as_str) {
        None => errs.add("missing required field: alt_text", at),
        Some(s) if chars(s) > MAX_ALT_TEXT => {
            errs.too_long(MAX_ALT_TEXT, &format!("{at}/alt_text"))
        }
        Some(_) => {}
    }
    if b.contains_key("title") {
        text_field(b, "title", at, MAX_ALT_TEXT, true, errs);
    }
}

/// `b[key]` must be a text object (plain_text only when `plain`) of at most `max`.
fn text_field(
    b: &Map<String, Value>,
    key: &str,
    at: &str,
    max: usize,
    plain: bool,
    errs: &mut Errors,
) {
    match b.get(key) {
        None => errs.add(&format!("missing required field: {key}"), at),
        Some(t) => text_object(t, &format!("{at}/{key}"), max, plain, errs),
    }
}

fn text_object(t: &Value, at: &str, max: usize, plain_only: bool, errs: &mut Errors) {
    let Some(o) = t.as_object() else {
        errs.add("must be an object", at);
        return;
    };
    match o.get("type").and_then(Value::as_str) {
        Some("plain_text") => {}
        Some("mrkdwn") if !plain_only => {
            if o.contains_key("emoji") {
                errs.add(
                    "emoji is only allowed on plain_text",
                    &format!("{at}/emoji"),
                );
            }
        }
        Some(_) => errs.add("must be a valid enum value", &format!("{at}/type")),
        None => errs.add("missing required field: type", at),
    }
    match o.get("text").and_then(Value::as_str) {
        None => errs.add("missing required field: text", at),
        Some("") => errs.add("must be more than 0 characters", &format!("{at}/text")),
        Some(s) if chars(s) > max => errs.too_long(max, &format!("{at}/text")),
        Some(_) => {}
    }
}

fn list_field(
    b: &Map<String, Value>,
    key: &str,
    at: &str,
    min: usize,
    max: usize,
    errs: &mut Errors,
) {
    match b.get(key) {
        None => errs.add(&format!("missing required field: {key}"), at),
        Some(Value::Array(items)) if items.len() < min => errs.add(
            &format!("must provide at least {min} item"),
            &format!("{at}/{key}"),
        ),
        Some(Value::Array(items)) if items.len() > max => errs.add(
            &format!("must provide an array of no more than {max} items"),
            &format!("{at}/{key}"),
        ),
        Some(Value::Array(_)) => {}
        Some(_) => errs.add("must be an array", &format!("{at}/{key}")),
    }
}

pub fn chars(s: &str) -> usize {
    s.chars().count()
}

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn add(&mut self, what: &str, pointer: &str) {
        self.0.push(format!("{what} [json-pointer:{pointer}]"));
    }

    /// Slack's wording for a length limit: "must be less than 3001 characters".
    fn too_long(&mut self, max: usize, pointer: &str) {
        self.add(
            &format!("must be less than {} characters", max + 1),
            pointer,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section_text(n: usize) -> Value {
        json!({"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(n)}})
    }

    #[test]
    fn limits_are_exact() {
        assert!(check(&json!([section_text(MAX_SECTION_TEXT)])).is_empty());
        assert_eq!(
            check(&json!([section_text(MAX_SECTION_TEXT + 1)])),
            ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
        );
        let many: Vec<Value> = (0..MAX_BLOCKS).map(|_| section_text(1)).collect();
        assert!(check(&Value::Array(many.clone())).is_empty());
        let mut too_many = many;
        too_many.push(json!({"type": "divider"}));
        assert_eq!(
            check(&Value::Array(too_many)),
            ["must provide an array of no more than 50 items [json-pointer:/blocks]"]
        );
        // Header: 150 characters (not bytes), plain_text only.
        let h =
            |t: &str, kind: &str| json!([{"type": "header", "text": {"type": kind, "text": t}}]);
        assert!(check(&h(&"é".repeat(150), "plain_text")).is_empty());
        assert_eq!(check(&h(&"é".repeat(151), "plain_text")).len(), 1);
        assert_eq!(
            check(&h("Report", "mrkdwn")),
            ["must be a valid enum value [json-pointer:/blocks/0/text/type]"]
        );
        // Fields: 10 items of 2000 at most.
        let field = |n: usize| json!({"type": "mrkdwn", "text": "y".repeat(n)});
        let fields = |k: usize, n: usize| json!([{"type": "section", "fields": (0..k).map(|_| field(n)).collect::<Vec<_>>()}]);
        assert!(check(&fields(10, 2000)).is_empty());
        assert_eq!(
            check(&fields(11, 1)),
            ["must provide an array of no more than 10 items [json-pointer:/blocks/0/fields]"]
        );
        assert_eq!(
            check(&fields(1, 2001)),
            ["must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]"]
        );
    }

    #[test]
    fn shapes_are_checked() {
        assert_eq!(
            check(&json!([{"type": "section"}])),
            ["missing required field: text or fields [json-pointer:/blocks/0]"]
        );
        assert_eq!(
            check(&json!([{"type": "sectoin", "text": {"type": "mrkdwn", "text": "a"}}])),
            ["must be a valid enum value [json-pointer:/blocks/0/type]"]
        );
        assert_eq!(
            check(
                &json!([{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}])
            ),
            ["duplicate block_id [json-pointer:/blocks/1/block_id]"]
        );
        assert_eq!(
            check(&json!([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}])),
            ["must be more than 0 characters [json-pointer:/blocks/0/text/text]"]
        );
        assert_eq!(
            check(&json!([{"type": "image", "image_url": "http://x/y.png"}])),
            ["missing required field: alt_text [json-pointer:/blocks/0]"]
        );
        assert_eq!(
            check(
                &json!([{"type": "context", "elements": (0..11).map(|_| json!({"type": "mrkdwn", "text": "a"})).collect::<Vec<_>>()}])
            ),
            ["must provide an array of no more than 10 items [json-pointer:/blocks/0/elements]"]
        );
        assert_eq!(
            check(&json!({"type": "divider"})),
            ["must be an array [json-pointer:/blocks]"]
        );
    }
}
