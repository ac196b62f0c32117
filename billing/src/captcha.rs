//! CAPTCHA: random digit strings rendered as PNG, answers bound to an id, single use, expiring.
//!
//! The image is drawn from a built-in 5×7 digit font with per-glyph jitter, scale and noise, and
//! encoded by the minimal PNG writer below (stored deflate blocks), so no image crate is needed.
//! Only a MAC of the answer is stored; verification deletes the row whatever the answer, so each
//! id can be tried once.

use rand::Rng;

use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::util::{constant_time_eq, hmac_hex, random_token};

const WIDTH: usize = 200;
const HEIGHT: usize = 70;
const DIGITS: usize = 6;

/// 5×7 glyphs for 0-9; each row's low five bits, most significant bit leftmost.
const FONT: [[u8; 7]; 10] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
];

/// A freshly issued CAPTCHA.
#[derive(Debug)]
pub struct Issued {
    /// Id to send back with the answer.
    pub id: String,
    /// The PNG image.
    pub png: Vec<u8>,
}

/// Creates a CAPTCHA, stores the MAC of its answer and returns the id and image.
pub async fn issue(db: &Db, key: &[u8], now: i64, ttl_secs: u64) -> ApiResult<Issued> {
    let answer: String = {
        let mut rng = rand::rngs::OsRng;
        (0..DIGITS)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect()
    };
    let id = random_token(16);
    let mac = hmac_hex(key, &["captcha", &id, &answer]);
    // Opportunistic cleanup keeps the table bounded by the issue rate times the TTL.
    sqlx::query("DELETE FROM captchas WHERE expires_at < $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    sqlx::query("INSERT INTO captchas (id, answer_mac, expires_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(&mac)
        .bind(now + ttl_secs as i64)
        .execute(&db.pool)
        .await?;
    Ok(Issued {
        id,
        png: render(&answer),
    })
}

/// Checks and consumes a CAPTCHA. `test_answer` is the dev-mode answer, accepted for any id.
pub async fn verify(
    db: &Db,
    key: &[u8],
    now: i64,
    id: &str,
    answer: &str,
    test_answer: Option<&str>,
) -> ApiResult<()> {
    let answer = answer.trim();
    if let Some(test) = test_answer {
        if constant_time_eq(test.as_bytes(), answer.as_bytes()) {
            return Ok(());
        }
    }
    if id.is_empty() || id.len() > 64 || answer.len() > 32 {
        return Err(ApiError::Captcha);
    }
    let row: Option<(String, i64)> =
        sqlx::query_as("DELETE FROM captchas WHERE id = $1 RETURNING answer_mac, expires_at")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
    let Some((mac, expires_at)) = row else {
        return Err(ApiError::Captcha);
    };
    let given = hmac_hex(key, &["captcha", id, answer]);
    if expires_at < now || !constant_time_eq(mac.as_bytes(), given.as_bytes()) {
        return Err(ApiError::Captcha);
    }
    Ok(())
}

/// Draws `text` (digits) on a noisy grey background.
pub fn render(text: &str) -> Vec<u8> {
    let mut rng = rand::rngs::OsRng;
    let mut px = vec![0u8; WIDTH * HEIGHT];
    for p in px.iter_mut() {
        *p = 200 + rng.gen_range(0..56u8);
    }
    let slot = WIDTH / (text.len().max(1) + 1);
    for (i, ch) in text.bytes().enumerate() {
        let Some(glyph) = ch.checked_sub(b'0').and_then(|d| FONT.get(d as usize)) else {
            continue;
        };
        let scale = rng.gen_range(4..=6usize);
        let x0 = slot / 2 + i * slot + rng.gen_range(0..6usize);
        let y0 = rng.gen_range(4..(HEIGHT - 7 * scale).max(5));
        let shear = rng.gen_range(-1i32..=1);
        let ink = rng.gen_range(0..80u8);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let y = y0 + row * scale + dy;
                        let skew = (shear * (row as i32 - 3)).unsigned_abs() as usize;
                        let x = x0 + col * scale + dx + skew;
                        if x < WIDTH && y < HEIGHT {
                            px[y * WIDTH + x] = ink;
                        }
                    }
                }
            }
        }
    }
    // Crossing lines defeat naive segmentation.
    for _ in 0..4 {
        let (mut y, dy) = (rng.gen_range(0..HEIGHT) as f32, rng.gen_range(-0.4f32..0.4));
        for x in 0..WIDTH {
            let yi = y as usize;
            if yi < HEIGHT {
                px[yi * WIDTH + x] = 60;
            }
            y = (y + dy).clamp(0.0, (HEIGHT - 1) as f32);
        }
    }
    encode_png_gray(WIDTH, HEIGHT, &px)
}

/// Encodes 8-bit greyscale pixels as PNG with stored (uncompressed) deflate blocks.
pub fn encode_png_gray(width: usize, height: usize, px: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity((width + 1) * height);
    for row in px.chunks(width).take(height) {
        raw.push(0); // filter type None
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let mut chunks = raw.chunks(65_535).peekable();
    while let Some(block) = chunks.next() {
        z.push(u8::from(chunks.peek().is_none()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // depth 8, greyscale, deflate, no filter, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc32::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finish().to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

struct Crc32(u32);

impl Crc32 {
    fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    fn update(&mut self, data: &[u8]) {
        for &byte in data {
            let mut c = (self.0 ^ u32::from(byte)) & 0xFF;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            self.0 = (self.0 >> 8) ^ c;
        }
    }
    fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_adler_known_values() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn png_structure_is_valid() {
        let png = render("123456");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
            WIDTH as u32
        );
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // Stored deflate: the image payload is exactly (width + 1) * height plus framing.
        assert!(png.len() > (WIDTH + 1) * HEIGHT);
    }
}
