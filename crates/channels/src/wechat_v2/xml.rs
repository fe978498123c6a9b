//! The flat XML of WeChat Pay API v2: `<xml><name>value</name>…</xml>`.
//!
//! Bodies come from the network (answers, notifications, the sandbox's requests), so the
//! reader refuses everything the protocol never uses instead of interpreting it: a DTD
//! (`<!DOCTYPE`, hence no custom entities and no "billion laughs"), processing
//! instructions, nested or repeated elements (a duplicated `total_fee` could make the
//! signature cover one value and the code read another), attributes, text outside the
//! elements, and bodies over [`MAX_BODY_BYTES`]. Values may be plain text (with the five
//! predefined entities and character references) or `CDATA`, as WeChat Pay writes them.
//!
//! quick-xml's pull parser is used rather than its serde mapping: the checks above are
//! about the document's shape, which a deserializer hides (it keeps the last duplicate).
//! Typed views are built from the checked map afterwards ([`XmlMap::to_typed`]).

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::de::DeserializeOwned;

/// The largest body read. WeChat Pay's answers and notifications are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most elements one body may hold (a refund query lists at most 50 refunds, each a
/// handful of indexed fields).
pub const MAX_ELEMENTS: usize = 1024;
const ROOT: &str = "xml";

/// Why a body is not acceptable v2 XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("DTDs are not accepted")]
    Doctype,
    #[error("duplicate element <{0}>")]
    Duplicate(String),
    #[error("unexpected XML: {0}")]
    Shape(String),
    #[error("XML syntax: {0}")]
    Syntax(String),
}

/// The checked fields of one body, by element name. Names are unique by construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlMap(BTreeMap<String, String>);

impl XmlMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value when present and not empty (v2 treats empty values as absent).
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Name order (byte order), which is also the signing order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A typed view of the fields (every value a string on the wire). Call it only on a
    /// map whose signature was verified.
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, String> {
        let object = self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| e.to_string())
    }

    /// The body: `<xml>` with every value in `CDATA` (a `]]>` inside a value is split
    /// across two sections, so any text round-trips).
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<xml>");
        for (k, v) in self.iter() {
            out.push('<');
            out.push_str(k);
            out.push_str("><![CDATA[");
            out.push_str(&v.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]></");
            out.push_str(k);
            out.push('>');
        }
        out.push_str("</xml>");
        out
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for XmlMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// An element name the protocol could use: lower-case ASCII letters, digits, `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parses one v2 body (see the module docs for what is refused).
pub fn parse(body: &[u8]) -> Result<XmlMap, XmlError> {
    parse_with_root(body, ROOT)
}

/// [`parse`] for a document whose root is `root` (the decrypted `req_info` of a refund
/// notification is a `<root>`).
pub fn parse_with_root(body: &[u8], root: &str) -> Result<XmlMap, XmlError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(XmlError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let shape = |m: &str| XmlError::Shape(m.to_owned());
    let syntax = |e: &dyn std::fmt::Display| XmlError::Syntax(e.to_string());
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;

    #[derive(PartialEq)]
    enum At {
        Before,
        InRoot,
        InField,
        After,
    }
    let mut at = At::Before;
    let mut fields = BTreeMap::new();
    let mut name = String::new();
    let mut value = String::new();
    loop {
        let event = reader.read_event().map_err(|e| syntax(&e))?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(shape("processing instruction")),
            Event::Decl(_) if at == At::Before => {}
            Event::Decl(_) => return Err(shape("misplaced XML declaration")),
            Event::Comment(_) => {}
            Event::Start(e) | Event::Empty(e) if e.attributes().next().is_some() => {
                return Err(shape("attributes"));
            }
            Event::Start(e) => {
                let tag = std::str::from_utf8(e.name().as_ref())
                    .map_err(|_| XmlError::NotUtf8)?
                    .to_owned();
                match at {
                    At::Before if tag == root => at = At::InRoot,
                    At::Before => return Err(XmlError::Shape(format!("root <{tag}>"))),
                    At::InRoot => {
                        if !valid_name(&tag) {
                            return Err(XmlError::Shape(format!("element name {tag:?}")));
                        }
                        if fields.contains_key(&tag) {
                            return Err(XmlError::Duplicate(tag));
                        }
                        if fields.len() >= MAX_ELEMENTS {
                            return Err(shape("too many elements"));
                        }
                        name = tag;
                        value.clear();
                        at = At::InField;
                    }
                    At::InField => return Err(shape("nested elements")),
                    At::After => return Err(shape("a second root")),
                }
            }
            Event::Empty(e) => {
                let tag = std::str::from_utf8(e.name().as_ref())
                    .map_err(|_| XmlError::NotUtf8)?
                    .to_owned();
                match at {
                    At::InRoot if valid_name(&tag) => {
                        if fields.insert(tag.clone(), String::new()).is_some() {
                            return Err(XmlError::Duplicate(tag));
                        }
                    }
                    At::Before if tag == root => at = At::After,
                    _ => return Err(XmlError::Shape(format!("empty element <{tag}>"))),
                }
            }
            Event::End(_) => match at {
                At::InField => {
                    fields.insert(std::mem::take(&mut name), std::mem::take(&mut value));
                    at = At::InRoot;
                }
                At::InRoot => at = At::After,
                _ => return Err(shape("unbalanced end tag")),
            },
            Event::Text(t) => {
                let t = t.xml_content().map_err(|e| syntax(&e))?;
                if at == At::InField {
                    value.push_str(&t);
                } else if !t.trim().is_empty() {
                    return Err(shape("text outside the fields"));
                }
            }
            Event::CData(c) => {
                if at != At::InField {
                    return Err(shape("CDATA outside the fields"));
                }
                value.push_str(&c.xml_content().map_err(|e| syntax(&e))?);
            }
            Event::GeneralRef(r) => {
                if at != At::InField {
                    return Err(shape("reference outside the fields"));
                }
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| syntax(&e))?
                } else {
                    predefined_entity(&r.decode().map_err(|e| syntax(&e))?)
                };
                // Only the predefined entities exist without a DTD.
                value.push(c.ok_or_else(|| shape("unknown entity"))?);
            }
            Event::Eof => break,
        }
    }
    if at != At::After {
        return Err(shape("no complete <xml> root"));
    }
    Ok(XmlMap(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdata_text_entities_and_whitespace() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  <total_fee>29</total_fee>\n  <body>a &amp; b &#x4E2D;<![CDATA[<c>]]></body>\n  <attach></attach>\n  <empty/>\n  <!-- a comment -->\n</xml>\n";
        let map = parse(body.as_bytes()).unwrap();
        assert_eq!(map.get("return_code"), Some("SUCCESS"));
        assert_eq!(map.get("total_fee"), Some("29"));
        assert_eq!(map.get("body"), Some("a & b 中<c>"));
        assert_eq!(map.get("attach"), Some(""));
        assert_eq!(map.non_empty("attach"), None);
        assert_eq!(map.get("empty"), Some(""));
        assert_eq!(map.len(), 5);
    }

    #[test]
    fn written_xml_round_trips_any_text() {
        let map: XmlMap = [("body", "Rust 入门 <&> ]]> \"'"), ("a", ""), ("z", "]]]]>")]
            .into_iter()
            .collect();
        let xml = map.to_xml();
        assert!(xml.starts_with("<xml><a><![CDATA[]]></a><body><![CDATA[Rust"));
        assert_eq!(parse(xml.as_bytes()).unwrap(), map);
    }

    #[test]
    fn dangerous_or_foreign_shapes_are_refused() {
        let cases: &[(&str, XmlError)] = &[
            (
                "<!DOCTYPE xml [<!ENTITY x \"y\">]><xml><a>&x;</a></xml>",
                XmlError::Doctype,
            ),
            (
                "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><xml><a>&lol2;</a></xml>",
                XmlError::Doctype,
            ),
            (
                "<xml><total_fee>1</total_fee><total_fee>100</total_fee></xml>",
                XmlError::Duplicate("total_fee".into()),
            ),
            ("<xml><a/><a>1</a></xml>", XmlError::Duplicate("a".into())),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body.as_bytes()).as_ref(), Err(expected), "{body}");
        }
        for body in [
            "<xml><a>&ext;</a></xml>",
            "<xml><a><b>1</b></a></xml>",
            "<xml><a x=\"1\">1</a></xml>",
            "<xml>text<a>1</a></xml>",
            "<root><a>1</a></root>",
            "<xml><a>1</a></xml><xml></xml>",
            "<xml><a>1</a>",
            "<xml><a>1</b></xml>",
            "<xml><A>1</A></xml>",
            "<xml><?php x?><a>1</a></xml>",
            "",
            "not xml",
        ] {
            assert!(parse(body.as_bytes()).is_err(), "accepted {body:?}");
        }
        let big = format!("<xml><a>{}</a></xml>", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(parse(big.as_bytes()), Err(XmlError::TooLarge));
        assert_eq!(parse(b"<xml><a>\xff</a></xml>"), Err(XmlError::NotUtf8));
        let many: String = (0..=MAX_ELEMENTS)
            .map(|i| format!("<f{i}>1</f{i}>"))
            .collect();
        assert!(parse(format!("<xml>{many}</xml>").as_bytes()).is_err());
    }

    #[test]
    fn typed_views_read_the_checked_fields() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct T {
            a: String,
            b: Option<String>,
            c: Option<String>,
        }
        let map = parse(b"<xml><a>1</a><b>2</b><extra>3</extra></xml>").unwrap();
        assert_eq!(
            map.to_typed::<T>().unwrap(),
            T {
                a: "1".into(),
                b: Some("2".into()),
                c: None
            }
        );
        assert!(
            parse(b"<xml><b>2</b></xml>")
                .unwrap()
                .to_typed::<T>()
                .is_err()
        );
    }
}
