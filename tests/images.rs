//! Image decoding limits and preprocessing of large photos (no GPU needed).

use std::time::Instant;

use rsp::preprocess::{load_image, preprocess, MAX_SIDE};

/// A PNG whose header claims `w × h` RGB pixels, with a few bytes of pixel data: what a
/// decompression bomb or a lying header looks like to the decoder.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    // A stored (uncompressed) zlib stream of 16 zero bytes.
    let idat = [
        0x78, 0x01, 0x01, 0x10, 0x00, 0xef, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x00, 0x00, 0x00, 0x01,
    ];
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn enormous_claimed_size_is_refused_with_the_file_and_size() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(100_000, 100_000), (MAX_SIDE + 1, 10), (15_000, 15_000)] {
        let path = dir.path().join(format!("bomb_{w}x{h}.png"));
        std::fs::write(&path, png_claiming(w, h)).unwrap();
        let err = format!("{:#}", load_image(&path).unwrap_err());
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("too large"), "{err}");
        assert!(err.contains(&format!("{w}×{h}")), "{err}");
    }
}

#[test]
fn large_photo_is_reduced_to_the_crop_quickly() {
    // A 6000×4000 JPEG, a camera-sized photo: decoding and preprocessing stay cheap.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("camera.jpg");
    let img = image::RgbImage::from_fn(6000, 4000, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8])
    });
    img.save(&path).unwrap();
    let t = Instant::now();
    let decoded = load_image(&path).unwrap();
    let decode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let p = preprocess(&decoded, 256, 224);
    let prep_s = t.elapsed().as_secs_f64();
    println!("6000×4000 JPEG: decode {decode_s:.3} s, resize + crop {prep_s:.3} s");
    assert_eq!(p.tensor.shape, vec![3, 224, 224]);
    assert_eq!(p.cropped.dimensions(), (224, 224));
    // Generous bounds for a busy 2-core CI machine.
    assert!(
        decode_s + prep_s < 20.0,
        "took {decode_s:.1} + {prep_s:.1} s"
    );
}
