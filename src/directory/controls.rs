//! Request controls that ldap3 does not ship: server-side sort (RFC 2891) and the
//! virtual list view (draft-ietf-ldapext-ldapv3-vlv), plus parsing of their answers.

use bytes::BytesMut;
use ldap3::asn1::{write, ASNTag, Boolean, Integer, OctetString, Sequence, Tag, TagClass};
use ldap3::controls::RawControl;

pub const SSS_OID: &str = "1.2.840.113556.1.4.473";
pub const VLV_OID: &str = "2.16.840.1.113730.3.4.9";

fn encode(tag: Tag) -> Vec<u8> {
    let mut buf = BytesMut::new();
    // Encoding into a growable buffer cannot fail.
    let _ = write::encode_into(&mut buf, tag.into_structure());
    buf.to_vec()
}

/// One server-side sort key: attribute, ordering rule and direction.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub attr: String,
    pub ordering_rule: Option<String>,
    pub reverse: bool,
}

pub fn server_side_sort(keys: &[SortKey]) -> RawControl {
    let keys = keys
        .iter()
        .map(|k| {
            let mut inner =
                vec![Tag::OctetString(OctetString { inner: k.attr.as_bytes().to_vec(), ..Default::default() })];
            if let Some(rule) = &k.ordering_rule {
                inner.push(Tag::OctetString(OctetString {
                    id: 0,
                    class: TagClass::Context,
                    inner: rule.as_bytes().to_vec(),
                }));
            }
            if k.reverse {
                inner.push(Tag::Boolean(Boolean { id: 1, class: TagClass::Context, inner: true }));
            }
            Tag::Sequence(Sequence { inner, ..Default::default() })
        })
        .collect();
    RawControl {
        ctype: SSS_OID.into(),
        crit: true,
        val: Some(encode(Tag::Sequence(Sequence { inner: keys, ..Default::default() }))),
    }
}

/// A VLV request by offset: `before_count` and `after_count` around the 1-based `offset`.
pub fn virtual_list_view(before: i64, after: i64, offset: i64, content_count: i64) -> RawControl {
    let int = |v| Tag::Integer(Integer { inner: v, ..Default::default() });
    let value = Tag::Sequence(Sequence {
        inner: vec![
            int(before),
            int(after),
            Tag::Sequence(Sequence { id: 0, class: TagClass::Context, inner: vec![int(offset), int(content_count)] }),
        ],
        ..Default::default()
    });
    RawControl { ctype: VLV_OID.into(), crit: true, val: Some(encode(value)) }
}
