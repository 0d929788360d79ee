//! Drawing photos: a soft-edged RGB canvas, camera-like event scenes and registration QR
//! photos. Deterministic for a given RNG; never touches files.

use super::*;

/// An RGB8 canvas with soft-edged, alpha-blended shapes.
pub(super) struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

pub(super) type Color = [f32; 3];

pub(super) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

pub(super) fn random_color(rng: &mut ChaCha8Rng, lo: u8, hi: u8) -> Color {
    [0; 3].map(|_: u8| f32::from(rng.random_range(lo..=hi)))
}

/// A color near `base`, each channel moved by up to `spread`.
pub(super) fn tint(rng: &mut ChaCha8Rng, base: f32, spread: f32) -> Color {
    [0; 3].map(|_: u8| (base + rng.random_range(-spread..=spread)).clamp(0.0, 255.0))
}

impl Canvas {
    /// A vertical two-color gradient around a horizon line, lit from one point (vignette).
    fn gradient(
        width: u32,
        height: u32,
        top: Color,
        bottom: Color,
        rng: &mut ChaCha8Rng,
        vignette: f32,
    ) -> Canvas {
        let (w, h) = (width as usize, height as usize);
        let horizon: f32 = rng.random_range(0.3..0.7);
        let blur: f32 = rng.random_range(0.1..0.35);
        let light_x: f32 = rng.random_range(0.2..0.8);
        let light_y: f32 = rng.random_range(0.1..0.5);
        let mut rgb = vec![0u8; w * h * 3];
        for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
            let fy = y as f32 / h as f32;
            let t = smoothstep(horizon - blur, horizon + blur, fy);
            let base = [0, 1, 2].map(|c| lerp(top[c], bottom[c], t));
            let dy = fy - light_y;
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let dx = x as f32 / w as f32 - light_x;
                let light = 1.0 - vignette * (dx * dx + dy * dy);
                for c in 0..3 {
                    px[c] = (base[c] * light).clamp(0.0, 255.0) as u8;
                }
            }
        }
        Canvas {
            width: w,
            height: h,
            rgb,
        }
    }

    /// Blends `color` over the pixels in `[x0, x1) x [y0, y1)` with the alpha `coverage(x, y)`
    /// returns (0 = untouched); `shade(y)` scales the color (lighting).
    fn paint(
        &mut self,
        bounds: (f32, f32, f32, f32),
        color: Color,
        coverage: impl Fn(f32, f32) -> f32,
        shade: impl Fn(f32) -> f32,
    ) {
        let (x0, y0, x1, y1) = bounds;
        let xs = x0.floor().max(0.0) as usize;
        let ys = y0.floor().max(0.0) as usize;
        let xe = (x1.ceil().max(0.0) as usize).min(self.width);
        let ye = (y1.ceil().max(0.0) as usize).min(self.height);
        for y in ys..ye {
            let fy = y as f32 + 0.5;
            let s = shade(fy);
            let row = &mut self.rgb[y * self.width * 3..(y + 1) * self.width * 3];
            for x in xs..xe {
                let a = coverage(x as f32 + 0.5, fy);
                if a <= 0.0 {
                    continue;
                }
                let a = a.min(1.0);
                let px = &mut row[x * 3..x * 3 + 3];
                for c in 0..3 {
                    let v = f32::from(px[c]);
                    px[c] = lerp(v, (color[c] * s).clamp(0.0, 255.0), a) as u8;
                }
            }
        }
    }

    /// A soft-edged filled ellipse.
    fn ellipse(
        &mut self,
        (cx, cy): (f32, f32),
        (rx, ry): (f32, f32),
        soft: f32,
        color: Color,
        alpha: f32,
    ) {
        let r_min = rx.min(ry);
        self.paint(
            (
                cx - rx - soft,
                cy - ry - soft,
                cx + rx + soft,
                cy + ry + soft,
            ),
            color,
            |x, y| {
                let (u, v) = ((x - cx) / rx, (y - cy) / ry);
                let d = (u * u + v * v).sqrt();
                ((1.0 - d) * r_min / soft + 0.5).clamp(0.0, 1.0) * alpha
            },
            |_| 1.0,
        );
    }

    /// A soft-edged rectangle, darker towards its bottom by `falloff`.
    fn rect(
        &mut self,
        (x0, y0, x1, y1): (f32, f32, f32, f32),
        soft: f32,
        color: Color,
        alpha: f32,
        falloff: f32,
    ) {
        let height = (y1 - y0).max(1.0);
        self.paint(
            (x0 - soft, y0 - soft, x1 + soft, y1 + soft),
            color,
            |x, y| {
                let edge = (x - x0).min(x1 - x).min(y - y0).min(y1 - y);
                (edge / soft + 0.5).clamp(0.0, 1.0) * alpha
            },
            |y| 1.0 - falloff * ((y - y0) / height).clamp(0.0, 1.0),
        );
    }

    /// Sensor noise: gaussian-like luminance noise (sd `luma_sd`) plus uniform chroma noise
    /// (amplitude `chroma`), one RNG word per pixel.
    fn noise(&mut self, rng: &mut ChaCha8Rng, luma_sd: f32, chroma: f32) {
        // The sum of four uniform bytes has sd 147.2 around 510.
        let k_luma = luma_sd / 147.2;
        let k_chroma = chroma / 127.5;
        for px in self.rgb.chunks_exact_mut(3) {
            let r = rng.next_u64().to_le_bytes();
            let sum = u32::from(r[0]) + u32::from(r[1]) + u32::from(r[2]) + u32::from(r[3]);
            let luma = (sum as f32 - 510.0) * k_luma;
            for c in 0..3 {
                let chroma_n = (f32::from(r[4 + c]) - 127.5) * k_chroma;
                px[c] = (f32::from(px[c]) + luma + chroma_n)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
}

pub(super) const SKIN_TONES: [Color; 6] = [
    [255.0, 219.0, 172.0],
    [241.0, 194.0, 125.0],
    [224.0, 172.0, 105.0],
    [198.0, 134.0, 66.0],
    [141.0, 85.0, 36.0],
    [92.0, 56.0, 30.0],
];

/// A camera-like event photo: a lit two-tone scene, some people and objects, sensor noise.
pub(super) fn render_photo(width: u32, height: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let top = random_color(rng, 70, 235);
    let bottom = random_color(rng, 25, 190);
    let vignette = rng.random_range(0.15..0.45);
    let mut canvas = Canvas::gradient(width, height, top, bottom, rng, vignette);
    let (w, h) = (width as f32, height as f32);
    let side = w.min(h);

    let shapes = rng.random_range(8..=18);
    for _ in 0..shapes {
        let soft = 0.8 + side * rng.random_range(0.002..0.02);
        match rng.random_range(0..3u8) {
            0 => {
                let cx = rng.random_range(0.0..w);
                let cy = rng.random_range(0.0..h);
                let rx = side * rng.random_range(0.03..0.22);
                let ry = side * rng.random_range(0.03..0.22);
                let color = random_color(rng, 0, 255);
                let alpha = rng.random_range(0.5..1.0);
                canvas.ellipse((cx, cy), (rx, ry), soft, color, alpha);
            }
            1 => {
                let x0 = rng.random_range(-0.1 * w..w);
                let y0 = rng.random_range(-0.1 * h..h);
                let x1 = x0 + side * rng.random_range(0.05..0.45);
                let y1 = y0 + side * rng.random_range(0.05..0.55);
                let color = random_color(rng, 0, 255);
                let alpha = rng.random_range(0.6..1.0);
                let falloff = rng.random_range(0.0..0.4);
                canvas.rect((x0, y0, x1, y1), soft, color, alpha, falloff);
            }
            _ => {
                // A person: torso down to the bottom edge, head above it.
                let body_w = side * rng.random_range(0.12..0.3);
                let cx = rng.random_range(0.05 * w..0.95 * w);
                let top_y = h * rng.random_range(0.3..0.7);
                let head_r = body_w * rng.random_range(0.3..0.4);
                let clothes = random_color(rng, 0, 255);
                let skin = SKIN_TONES[rng.random_range(0..SKIN_TONES.len())];
                let skin =
                    [0, 1, 2].map(|c| (skin[c] + rng.random_range(-12.0..12.0)).clamp(0.0, 255.0));
                let falloff = rng.random_range(0.1..0.4);
                canvas.rect(
                    (cx - body_w / 2.0, top_y, cx + body_w / 2.0, h + soft),
                    soft,
                    clothes,
                    1.0,
                    falloff,
                );
                canvas.ellipse(
                    (cx, top_y - head_r * 0.9),
                    (head_r * 0.85, head_r),
                    soft,
                    skin,
                    1.0,
                );
            }
        }
    }
    let luma_sd = rng.random_range(4.0..7.0);
    canvas.noise(rng, luma_sd, luma_sd * 0.8);
    canvas.rgb
}

/// The QR code of a registration payload (error correction M, the smallest version that fits).
pub(super) fn qr_code(payload: &str) -> Result<QrCode, PhotoError> {
    QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).map_err(|e| {
        PhotoError::Invalid {
            setting: "people",
            reason: format!("cannot encode QR payload {payload:?}: {e}"),
        }
    })
}

/// A QR photo: `payload` as a QR code on a light card (quiet zone kept), large in the frame,
/// over a light, slightly noisy scene.
pub(super) fn render_qr_photo(
    width: u32,
    height: u32,
    payload: &str,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<u8>, PhotoError> {
    let code = qr_code(payload)?;
    let modules = code.width();
    let colors = code.to_colors();
    let mut canvas = light_scene(width, height, rng);
    let card = CardLayout::choose(width, height, modules, rng);
    let paper_level = rng.random_range(238.0..250.0);
    let paper = tint(rng, paper_level, 4.0);
    let (x, y, side) = (card.x as f32, card.y as f32, card.side as f32);
    canvas.rect((x, y, x + side, y + side), 0.8, paper, 1.0, 0.03);
    let ink_level = rng.random_range(15.0..40.0);
    let ink = tint(rng, ink_level, 6.0);
    let ink = ink.map(|v| v as u8);
    let origin = (
        card.x + card.quiet * card.module,
        card.y + card.quiet * card.module,
    );
    paint_modules(&mut canvas, &colors, modules, origin, card.module, ink);
    let luma_sd = rng.random_range(2.0..3.5);
    canvas.noise(rng, luma_sd, luma_sd * 0.6);
    Ok(canvas.rgb)
}

/// The light scene behind a QR card: a gradient with a vignette and a few soft ellipses.
fn light_scene(width: u32, height: u32, rng: &mut ChaCha8Rng) -> Canvas {
    let top_level = rng.random_range(200.0..240.0);
    let top = tint(rng, top_level, 12.0);
    let bottom_level = rng.random_range(180.0..230.0);
    let bottom = tint(rng, bottom_level, 12.0);
    let vignette = rng.random_range(0.08..0.2);
    let mut canvas = Canvas::gradient(width, height, top, bottom, rng, vignette);
    let (w, h) = (width as f32, height as f32);
    let side = w.min(h);
    for _ in 0..rng.random_range(3..=7) {
        let cx = rng.random_range(0.0..w);
        let cy = rng.random_range(0.0..h);
        let rx = side * rng.random_range(0.05..0.25);
        let ry = side * rng.random_range(0.05..0.25);
        let color = random_color(rng, 150, 235);
        let alpha = rng.random_range(0.3..0.6);
        canvas.ellipse((cx, cy), (rx, ry), 2.0 + side * 0.01, color, alpha);
    }
    canvas
}

/// Where the QR card goes and how large its modules are, in pixels.
struct CardLayout {
    x: usize,
    y: usize,
    /// The card's side (the code and its quiet zone).
    side: usize,
    module: usize,
    /// The quiet zone, in modules.
    quiet: usize,
}

impl CardLayout {
    /// Module size: the code spans 40-60% of the shorter side, with a 4-module quiet zone.
    /// Small frames get bigger modules than that (rqrr's 1:1:3:1:1 finder test is integer
    /// arithmetic on run lengths, which 1-2 px modules after JPEG fail now and then) and a
    /// quiet zone narrowed to what fits, at least two modules on the card. The card sits
    /// near the middle.
    fn choose(width: u32, height: u32, modules: usize, rng: &mut ChaCha8Rng) -> CardLayout {
        let short = width.min(height) as usize;
        let share = rng.random_range(0.40..0.60);
        let by_share = ((short as f64 * share) / modules as f64).floor() as usize;
        let max_module = (short / (modules + 2 * MIN_QUIET_MODULES)).max(1);
        let module = by_share.max(MIN_MODULE_PX).min(max_module);
        let quiet = ((short / module).saturating_sub(modules) / 2).clamp(MIN_QUIET_MODULES, 4);
        let side = (modules + 2 * quiet) * module;
        let slack_x = (width as usize).saturating_sub(side);
        let slack_y = (height as usize).saturating_sub(side);
        let x = slack_x / 2 + rng.random_range(0..=slack_x / 4) - slack_x / 8;
        let y = slack_y / 2 + rng.random_range(0..=slack_y / 4) - slack_y / 8;
        CardLayout {
            x,
            y,
            side,
            module,
            quiet,
        }
    }
}

/// Paints the dark modules of a code of `modules` × `modules` from `origin`, `module` px
/// each, clipped to the canvas.
fn paint_modules(
    canvas: &mut Canvas,
    colors: &[qrcode::Color],
    modules: usize,
    origin: (usize, usize),
    module: usize,
    ink: [u8; 3],
) {
    let (origin_x, origin_y) = origin;
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules, i / modules);
        for y in origin_y + my * module..origin_y + (my + 1) * module {
            if y >= canvas.height {
                break;
            }
            let row = y * canvas.width * 3;
            for x in origin_x + mx * module..origin_x + (mx + 1) * module {
                if x >= canvas.width {
                    break;
                }
                canvas.rgb[row + x * 3..row + x * 3 + 3].copy_from_slice(&ink);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------------------------
