//! The SQLite backend's start-up page: every device of a page in one buffer, decoded in
//! place into [`DeviceView`]s.
//!
//! Why: sqlx's SQLite driver hands each result row from its worker thread through a channel
//! (two futex calls a row), so a page must come back as one value; and building that value
//! in SQL from the twenty-two columns (as JSON, with blobs in hex) cost more than the rest of
//! start-up, as did parsing it back. So each row also keeps a *load image*, the columns that
//! a PUT sets packed in the binary form below (written by the upsert that writes the
//! columns), and a page is the concatenation of images plus the three columns that change
//! without a PUT (state, last status, last PUT time). SQLite then copies a few values a row
//! instead of formatting twenty-two, and decoding is slicing.
//!
//! The columns stay the truth; the image is a copy for loading. A trigger clears the image
//! when an `UPDATE` changes an imaged column without rewriting it (the dead-push-token
//! update), opening the store fills missing images (rows written before the column existed),
//! and a page that still meets a row without one is read column by column.
//!
//! A page row, as `page_row!` builds it:
//!
//! ```text
//! last_put_ms ' ' last_status ' '      decimal text, as SQLite prints an integer
//! len(state) state                     the length as one character, as SQLite's char() encodes it
//! image | 0x00                         0x00: this row has no image
//! ```
//!
//! An image (version 1): the version byte; `binding_id` and `expires` as little-endian
//! `i64`; the lengths of the thirteen text columns then of the four blob columns, in
//! [`DeviceRecord`](super::DeviceRecord) order, as little-endian `u32` (`u32::MAX`: NULL);
//! then the texts back to back, then the blobs. Texts first and together, so that decoding
//! checks UTF-8 once a row rather than once a field.

use super::DeviceView;

/// The first byte of an image of the current format. 0 is never a version: it marks a row
/// without image in a page.
const IMAGE_VERSION: u8 = 1;

/// A NULL optional column in an image.
const NULL_LEN: u32 = u32::MAX;

/// One row of a page, as SQL; the caller aggregates these with `group_concat(..., '')`.
/// Only the load image and the three columns that change without a PUT are read.
macro_rules! page_row {
    () => {
        "concat(last_put_ms, ' ', last_status, ' ', \
         char(octet_length(state)), state, ifnull(load_image, x'00'))"
    };
}
pub(super) use page_row;

/// Text columns in an image.
const TEXTS: usize = 13;
/// Blob columns in an image.
const BLOBS: usize = 4;
/// Bytes of an image before the texts.
const HEADER: usize = 1 + 8 + 8 + 4 * (TEXTS + BLOBS);

/// The load image of a device, as the upsert stores it next to the columns; `None` (store
/// NULL: the row is then loaded column by column) for a column of 4 GiB or more, which the
/// API's body limit keeps from ever reaching the store.
pub(super) fn encode_image(d: &DeviceView<'_>) -> Option<Vec<u8>> {
    let texts: [Option<&str>; TEXTS] = [
        Some(d.device_id),
        Some(d.contact_token),
        Some(d.username),
        d.auth_username,
        Some(d.domain),
        d.outbound_proxy,
        d.transport,
        d.display_name,
        Some(d.push_kind),
        d.push_topic,
        d.push_env,
        Some(d.app_id),
        Some(d.app_version),
    ];
    let blobs: [&[u8]; BLOBS] = [d.password_enc, d.push_enc, d.secret_hash, d.body_hash];
    let fields = texts
        .iter()
        .map(|t| t.map(str::as_bytes))
        .chain(blobs.iter().map(|b| Some(*b)));
    let len = HEADER
        + texts.iter().flatten().map(|t| t.len()).sum::<usize>()
        + blobs.iter().map(|b| b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(IMAGE_VERSION);
    out.extend_from_slice(&d.binding_id.to_le_bytes());
    out.extend_from_slice(&d.expires.to_le_bytes());
    for f in fields.clone() {
        let n = match f {
            Some(f) => u32::try_from(f.len()).ok().filter(|&n| n != NULL_LEN)?,
            None => NULL_LEN,
        };
        out.extend_from_slice(&n.to_le_bytes());
    }
    for f in fields.flatten() {
        out.extend_from_slice(f);
    }
    Some(out)
}

/// The text columns of an image, in its order, for errors.
const TEXT_NAMES: [&str; TEXTS] = [
    "device_id",
    "contact_token",
    "username",
    "auth_username",
    "domain",
    "outbound_proxy",
    "transport",
    "display_name",
    "push_kind",
    "push_topic",
    "push_env",
    "app_id",
    "app_version",
];

/// The blob columns of an image, in its order, for errors.
const BLOB_NAMES: [&str; BLOBS] = ["password_enc", "push_enc", "secret_hash", "body_hash"];

/// What a page decodes to.
#[derive(Debug)]
pub(super) enum Page<'a> {
    /// Every row, in the page's order.
    Views(Vec<DeviceView<'a>>),
    /// A row has no load image: the page must be read column by column.
    Unimaged,
}

/// Decodes a page built from `page_row!`s, of up to `limit` rows (the room reserved for
/// them). The error says which row and field is bad.
pub(super) fn decode_page(buf: &[u8], limit: usize) -> Result<Page<'_>, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut rows = Vec::with_capacity(limit);
    while r.pos < buf.len() {
        match r.row() {
            Ok(Some(view)) => rows.push(view),
            Ok(None) => return Ok(Page::Unimaged),
            Err(what) => return Err(format!("packed page, row {}: {what}", rows.len())),
        }
    }
    Ok(Page::Views(rows))
}

/// A cursor over a page; each method consumes one field or says what is wrong with it.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// One row: `None` when it has no image.
    fn row(&mut self) -> Result<Option<DeviceView<'a>>, String> {
        let last_put_ms = self.decimal("last_put_ms")?;
        let last_status = self.decimal("last_status")?;
        let state_len = self.sqlite_char("state length")?;
        let state = self.text(state_len, "state")?;
        match self.take(1, "image version")?[0] {
            0 => return Ok(None),
            IMAGE_VERSION => {}
            v => return Err(format!("image version {v} is unknown")),
        }
        let header = self.take(HEADER - 1, "image")?;
        let int = |at: usize| {
            i64::from_le_bytes(
                header[at..at + 8]
                    .try_into()
                    .expect("8 bytes of the header"),
            )
        };
        let mut lens = [0u32; TEXTS + BLOBS];
        for (i, len) in lens.iter_mut().enumerate() {
            let at = 16 + 4 * i;
            *len = u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        }
        let text_len = lens[..TEXTS]
            .iter()
            .filter(|&&n| n != NULL_LEN)
            .map(|&n| n as usize)
            .sum();
        let all_text = self.text(text_len, "texts")?;
        let mut at = 0;
        let mut text = |i: usize| -> Result<Option<&'a str>, String> {
            if lens[i] == NULL_LEN {
                return Ok(None);
            }
            let end = at + lens[i] as usize;
            let t = all_text
                .get(at..end)
                .ok_or_else(|| format!("{}: not UTF-8", TEXT_NAMES[i]))?;
            at = end;
            Ok(Some(t))
        };
        let required =
            |t: Option<&'a str>, i: usize| t.ok_or_else(|| format!("{}: NULL", TEXT_NAMES[i]));
        let device_id = required(text(0)?, 0)?;
        let contact_token = required(text(1)?, 1)?;
        let username = required(text(2)?, 2)?;
        let auth_username = text(3)?;
        let domain = required(text(4)?, 4)?;
        let outbound_proxy = text(5)?;
        let transport = text(6)?;
        let display_name = text(7)?;
        let push_kind = required(text(8)?, 8)?;
        let push_topic = text(9)?;
        let push_env = text(10)?;
        let app_id = required(text(11)?, 11)?;
        let app_version = required(text(12)?, 12)?;
        let mut blob = |i: usize| {
            let name = BLOB_NAMES[i];
            match lens[TEXTS + i] {
                NULL_LEN => Err(format!("{name}: NULL")),
                n => self.take(n as usize, name),
            }
        };
        Ok(Some(DeviceView {
            device_id,
            binding_id: int(0),
            contact_token,
            username,
            auth_username,
            password_enc: blob(0)?,
            domain,
            outbound_proxy,
            transport,
            display_name,
            push_kind,
            push_enc: blob(1)?,
            push_topic,
            push_env,
            app_id,
            app_version,
            expires: int(8),
            secret_hash: blob(2)?,
            body_hash: blob(3)?,
            last_put_ms,
            state,
            last_status,
        }))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| format!("{what}: truncated"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// An integer as SQLite prints it, then a space.
    fn decimal(&mut self, what: &str) -> Result<i64, String> {
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| format!("{what}: truncated"))?;
        let (negative, digits) = match &rest[..len] {
            [b'-', digits @ ..] => (true, digits),
            digits => (false, digits),
        };
        // Accumulated negatively, so that i64::MIN parses too.
        let mut value: i64 = 0;
        for &d in digits {
            value = (d.is_ascii_digit())
                .then(|| value.checked_mul(10)?.checked_sub(i64::from(d - b'0')))
                .flatten()
                .ok_or_else(|| format!("{what}: not an integer"))?;
        }
        let value = match negative {
            true => value,
            false => value
                .checked_neg()
                .ok_or_else(|| format!("{what}: not an integer"))?,
        };
        if digits.is_empty() {
            return Err(format!("{what}: not an integer"));
        }
        self.pos += len + 1;
        Ok(value)
    }

    /// A number that SQLite's `char()` encoded as one character (UTF-8 extended to any code
    /// point up to 0x10FFFF, surrogates included). `char()` turns what it cannot encode into
    /// U+FFFD, so that value is refused rather than misread.
    fn sqlite_char(&mut self, what: &str) -> Result<usize, String> {
        let lead = self.take(1, what)?[0];
        let (extra, init) = match lead {
            0x00..=0x7F => (0, u32::from(lead)),
            0xC0..=0xDF => (1, u32::from(lead & 0x1F)),
            0xE0..=0xEF => (2, u32::from(lead & 0x0F)),
            0xF0..=0xF7 => (3, u32::from(lead & 0x07)),
            _ => return Err(format!("{what}: not a character")),
        };
        let mut value = init;
        for &b in self.take(extra, what)? {
            if b & 0xC0 != 0x80 {
                return Err(format!("{what}: not a character"));
            }
            value = value << 6 | u32::from(b & 0x3F);
        }
        if value == 0xFFFD {
            return Err(format!("{what}: out of range"));
        }
        Ok(value as usize)
    }

    fn text(&mut self, len: usize, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.take(len, what)?).map_err(|_| format!("{what}: not UTF-8"))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::DeviceRecord;

    /// What SQLite's `char()` writes for a code point (its `charFunc`, in Rust).
    pub(crate) fn sqlite_char(c: u32) -> Vec<u8> {
        match c {
            0..0x80 => vec![c as u8],
            0x80..0x800 => vec![0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8],
            0x800..0x10000 => vec![
                0xE0 | (c >> 12) as u8,
                0x80 | ((c >> 6) & 0x3F) as u8,
                0x80 | (c & 0x3F) as u8,
            ],
            _ => vec![
                0xF0 | (c >> 18) as u8,
                0x80 | ((c >> 12) & 0x3F) as u8,
                0x80 | ((c >> 6) & 0x3F) as u8,
                0x80 | (c & 0x3F) as u8,
            ],
        }
    }

    /// A page row as `page_row!` builds it.
    fn page_row(r: &DeviceRecord) -> Vec<u8> {
        let mut row = format!("{} {} ", r.last_put_ms, r.last_status).into_bytes();
        row.extend(sqlite_char(r.state.len() as u32));
        row.extend_from_slice(r.state.as_bytes());
        row.extend(encode_image(&r.view()).expect("small record"));
        row
    }

    fn record(id: &str) -> DeviceRecord {
        DeviceRecord {
            device_id: id.into(),
            binding_id: -5,
            contact_token: "fffffffffffffffb".into(),
            username: "ü ser".into(),
            auth_username: None,
            password_enc: vec![0, 1, 2],
            domain: "sip.example.com".into(),
            outbound_proxy: Some(String::new()),
            transport: Some("tls".into()),
            display_name: Some("\0\" ' \\".into()),
            push_kind: "fcm".into(),
            push_enc: vec![0xFF; 300],
            push_topic: None,
            push_env: None,
            app_id: "app".into(),
            app_version: String::new(),
            expires: i64::MIN,
            secret_hash: vec![1; 32],
            body_hash: vec![2; 16],
            last_put_ms: i64::MAX,
            state: "registered".into(),
            last_status: -408,
        }
    }

    fn views(buf: &[u8]) -> Vec<DeviceRecord> {
        match decode_page(buf, 2) {
            Ok(Page::Views(v)) => v.iter().map(DeviceView::to_record).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_round_trip_field_for_field() {
        let a = record("a");
        let mut b = record("b");
        b.state = "é".repeat(200);
        b.auth_username = Some("x".into());
        b.push_topic = Some(String::new());
        let mut page = page_row(&a);
        page.extend(page_row(&b));
        assert!(views(&page) == [a, b]);
        assert!(views(&[]).is_empty());
    }

    #[test]
    fn a_row_without_image_asks_for_the_columns() {
        let mut page = page_row(&record("a"));
        page.extend_from_slice(b"1 0 \x0aregistered\x00");
        assert!(matches!(decode_page(&page, 2), Ok(Page::Unimaged)));
    }

    /// Every truncation of a page is an error naming its row, or (cut at a row boundary)
    /// the rows before the cut; never a panic.
    #[test]
    fn truncated_pages_are_errors() {
        let first = page_row(&record("a"));
        let mut page = first.clone();
        page.extend(page_row(&record("b")));
        for cut in 0..page.len() {
            match decode_page(&page[..cut], 2) {
                Ok(Page::Views(v)) => assert!(cut == 0 && v.is_empty() || cut == first.len()),
                Ok(Page::Unimaged) => panic!("cut at {cut}: unimaged"),
                Err(e) => {
                    let row = if cut < first.len() { 0 } else { 1 };
                    assert!(e.starts_with(&format!("packed page, row {row}: ")), "{e}");
                }
            }
        }
    }

    #[test]
    fn damaged_fields_are_errors() {
        let r = record("a");
        let good = page_row(&r);
        let state_at = format!("{} {} ", r.last_put_ms, r.last_status).len();
        let image_at = state_at + 1 + "registered".len();
        let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
        let mut v = good.clone();
        v[0] = b'x';
        cases.push((v, "last_put_ms: not an integer"));
        cases.push((b"12 ".to_vec(), "last_status: truncated"));
        let mut v = good.clone();
        v[state_at] = 0x80;
        cases.push((v, "state length: not a character"));
        let mut v = good[..state_at].to_vec();
        v.extend(sqlite_char(0xFFFD));
        cases.push((v, "state length: out of range"));
        let mut v = good.clone();
        v[state_at + 1] = 0xFF;
        cases.push((v, "state: not UTF-8"));
        let mut v = good.clone();
        v[image_at] = 2;
        cases.push((v, "image version 2 is unknown"));
        let texts_at = image_at + HEADER;
        let mut v = good.clone();
        // The device id's length: far more than there is.
        v[image_at + 17] = 0xFF;
        v[image_at + 18] = 0xFF;
        cases.push((v, "texts: truncated"));
        let mut v = good.clone();
        v[texts_at] = 0xC3;
        cases.push((v, "texts: not UTF-8"));
        let mut v = good.clone();
        // The same texts cut elsewhere: the device id ends inside the "ü" of the username.
        v[image_at + 17] = 1 + 16 + 1;
        v[image_at + 21] = 0;
        v[image_at + 25] = 5;
        cases.push((v, "device_id: not UTF-8"));
        let mut v = good.clone();
        v[image_at + 17..image_at + 21].copy_from_slice(&NULL_LEN.to_le_bytes());
        cases.push((v, "device_id: NULL"));
        let mut v = good.clone();
        let blob_lens = image_at + 17 + 4 * TEXTS;
        v[blob_lens..blob_lens + 4].copy_from_slice(&NULL_LEN.to_le_bytes());
        cases.push((v, "password_enc: NULL"));
        let mut v = good.clone();
        v.truncate(v.len() - 1);
        cases.push((v, "body_hash: truncated"));
        for (page, want) in cases {
            match decode_page(&page, 2) {
                Err(e) => assert_eq!(e, format!("packed page, row 0: {want}")),
                Ok(p) => panic!("{want}: decoded {p:?}"),
            }
        }
    }

    #[test]
    fn sqlite_char_reads_every_width() {
        for c in [
            0, 1, 0x7F, 0x80, 0x7FF, 0x800, 0xD800, 0xDFFF, 0xFFFC, 0xFFFE, 0xFFFF, 0x10000,
            0x10FFFF,
        ] {
            let bytes = sqlite_char(c);
            let mut r = Reader {
                buf: &bytes,
                pos: 0,
            };
            assert_eq!(r.sqlite_char("n"), Ok(c as usize), "{c:#x}");
            assert_eq!(r.pos, bytes.len());
        }
    }
}
