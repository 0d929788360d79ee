//! What the processor does to one file: decode the image (refusing truncated JPEGs), look
//! for a QR code, and check registration payloads and emails. Reads bytes it is given;
//! never opens files or writes anything.

use super::*;

/// What the processor learns from one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub content_hash: String,
    pub width: u32,
    pub height: u32,
    /// Text of the first QR code found that decodes, if any.
    pub qr_payload: Option<String>,
    /// Texts of every QR code found that decodes, each once, in the order found (the first is
    /// `qr_payload`). More than one means several codes in one photo.
    #[serde(default)]
    pub qr_payloads: Vec<String>,
}

/// Why an email address is refused, or `None` when it is one: 1 to 254 bytes, an `@` with
/// something on both sides, no whitespace. The kiosk endpoint and the QR payloads of
/// registrations apply the same rule.
pub fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("is empty");
    }
    if email.len() > 254 {
        return Some("is longer than 254 bytes");
    }
    if email.contains(char::is_whitespace) {
        return Some("contains whitespace");
    }
    match email.find('@') {
        Some(i) if i > 0 && i + 1 < email.len() => None,
        _ => Some("has no @ with text on both sides"),
    }
}

/// The email of a registration QR payload (`LOCKBENCH-REG:` + an email), or why the payload
/// is not one.
pub fn registration_email(payload: &str) -> Result<&str, String> {
    let Some(email) = payload.strip_prefix(QR_PREFIX) else {
        return Err(format!(
            "QR payload {payload:?} is not a registration (expected {QR_PREFIX} + an email)"
        ));
    };
    match email_problem(email) {
        None => Ok(email),
        Some(problem) => Err(format!(
            "malformed registration QR payload {payload:?}: the email {email:?} {problem}"
        )),
    }
}

/// Decodes the image bytes (format guessed from the content) and looks for a QR code (rqrr on
/// the grayscale image, first grid that decodes). A file that does not decode is a
/// `PhotoError::Decode` naming why: empty, not an image, truncated, or invalid data.
///
/// A JPEG without an end-of-image marker after its scan data is refused as truncated, as
/// Pillow refuses it by default, rather than decoded with its missing part filled in. Never
/// panics: a panic inside a decoder becomes a `Decode` error.
pub fn scan(bytes: &[u8]) -> Result<Scan, PhotoError> {
    let content_hash = content_hash(bytes);
    let (width, height, qr_payloads) =
        match panic::catch_unwind(AssertUnwindSafe(|| scan_image(bytes))) {
            Ok(result) => result?,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(PhotoError::decode(format!("decoder panicked: {what}")));
            }
        };
    Ok(Scan {
        content_hash,
        width,
        height,
        qr_payload: qr_payloads.first().cloned(),
        qr_payloads,
    })
}

pub(super) fn scan_image(bytes: &[u8]) -> Result<(u32, u32, Vec<String>), PhotoError> {
    let image = decode_image(bytes)?;
    let (width, height) = (image.width(), image.height());
    let luma = to_luma(image);
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    let mut payloads: Vec<String> = Vec::new();
    for grid in prepared.detect_grids() {
        if let Ok((_, text)) = grid.decode() {
            if !payloads.contains(&text) {
                payloads.push(text);
            }
        }
    }
    Ok((width, height, payloads))
}

/// Grayscale for rqrr. RGB8 (every JPEG photo) takes an integer Rec. 709 conversion, several
/// times faster than `into_luma8`'s generic one; the rest goes through `into_luma8`.
pub(super) fn to_luma(image: image::DynamicImage) -> image::GrayImage {
    match image {
        image::DynamicImage::ImageLuma8(gray) => gray,
        image::DynamicImage::ImageRgb8(rgb) => {
            let (w, h) = rgb.dimensions();
            let luma: Vec<u8> = rgb
                .as_raw()
                .chunks_exact(3)
                .map(|p| {
                    let y = 54 * u32::from(p[0]) + 183 * u32::from(p[1]) + 19 * u32::from(p[2]);
                    ((y + 128) >> 8) as u8
                })
                .collect();
            image::GrayImage::from_raw(w, h, luma)
                .unwrap_or_else(|| image::DynamicImage::ImageRgb8(rgb).into_luma8())
        }
        other => other.into_luma8(),
    }
}

pub(super) fn decode_image(bytes: &[u8]) -> Result<image::DynamicImage, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::decode("empty file (0 bytes)"));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        PhotoError::decode(format!(
            "not an image: unknown content ({} bytes, starting {head})",
            bytes.len()
        ))
    })?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(PhotoError::decode(format!(
            "truncated JPEG: no end-of-image marker after the scan data ({} bytes)",
            bytes.len()
        )));
    }
    ImageReader::with_format(Cursor::new(bytes), format)
        .decode()
        .map_err(|e| {
            PhotoError::decode(match &e {
                ImageError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                    format!("truncated {format:?}: {e}")
                }
                ImageError::Unsupported(_) => format!("unsupported image format {format:?}: {e}"),
                ImageError::Limits(_) => format!("{format:?} image too large: {e}"),
                _ => format!("invalid {format:?} data: {e}"),
            })
        })
}

/// Whether a JPEG has an end-of-image marker (FF D9) after its first start-of-scan (FF DA).
/// Entropy-coded data stuffs every FF with 00, so a truncated scan has no FF D9 in it.
pub(super) fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let find = |marker: u8| bytes.windows(2).position(|w| w == [0xff, marker]);
    let eoi = bytes.windows(2).rposition(|w| w == [0xff, 0xd9]);
    match (find(0xda), eoi) {
        (Some(sos), Some(eoi)) => eoi > sos,
        // No scan at all: let the decoder say what is wrong.
        (None, _) => true,
        (Some(_), None) => false,
    }
}
