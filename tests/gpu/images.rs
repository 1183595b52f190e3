//! Image decoding limits and preprocessing of large photos (no GPU needed).

use std::time::Instant;

use rsp::preprocess::{load_image, load_image_bytes, preprocess, MAX_SIDE};

/// A PNG whose header claims `w × h` RGB pixels, with a few bytes of pixel data: what a
/// decompression bomb or a lying header looks like to the decoder.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend(crc.to_be_bytes());
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
        let upload = format!(
            "{:#}",
            load_image_bytes(&png_claiming(w, h), "up").unwrap_err()
        );
        assert_eq!(upload, err.replace(&path.display().to_string(), "up"));
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

/// A 64×48 gradient encoded as `format`.
fn gradient(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    });
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

/// Offset and length of every PNG chunk (from its length field to its CRC), with its type.
fn png_chunks(png: &[u8]) -> Vec<(usize, usize, [u8; 4])> {
    let mut chunks = Vec::new();
    let mut i = 8;
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
        chunks.push((i, 12 + len, png[i + 4..i + 8].try_into().unwrap()));
        i += 12 + len;
    }
    chunks
}

/// Offset just past the JPEG's first start-of-scan header: where the compressed data begins.
fn jpeg_scan_start(jpeg: &[u8]) -> usize {
    let sos = jpeg.windows(2).position(|w| w == [0xff, 0xda]).unwrap();
    sos + 2 + u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]) as usize
}

/// Loads `bytes` written to `dir/name`; the error message, or `None` if it decoded.
fn load_error(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Option<String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let from_file = load_image(&path).err().map(|e| {
        let e = format!("{e:#}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        e
    });
    // The same bytes held in memory (an upload to `rsp serve`) meet the same checks,
    // with the same message under their own name, as invalid input.
    let from_bytes = load_image_bytes(bytes, "upload").err().map(|e| {
        assert_eq!(rsp::error::kind(&e), rsp::ErrorKind::InvalidInput, "{e:#}");
        format!("{e:#}")
    });
    assert_eq!(
        from_bytes,
        from_file
            .as_ref()
            .map(|e| e.replace(&path.display().to_string(), "upload")),
        "{name}: an upload and a file differ"
    );
    from_file
}

#[test]
fn truncated_jpeg_and_png_are_refused_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    for (format, ext) in [
        (image::ImageFormat::Jpeg, "jpg"),
        (image::ImageFormat::Png, "png"),
    ] {
        let full = gradient(format);
        assert_eq!(load_error(dir.path(), &format!("full.{ext}"), &full), None);
        let n = full.len();
        // The header only (the JPEG's tables and scan header; the PNG's signature and
        // IHDR), a cut inside the header, half, and all but the last few bytes (the
        // PNG's last 12 are its whole IEND chunk).
        let header = match format {
            image::ImageFormat::Jpeg => jpeg_scan_start(&full),
            _ => 8 + 25,
        };
        for cut in [20, header, n / 2, n - 20, n - 12, n - 2, n - 1] {
            let e = load_error(dir.path(), &format!("cut{cut}.{ext}"), &full[..cut])
                .unwrap_or_else(|| panic!("{ext} cut to {cut} of {n} bytes was decoded"));
            assert!(
                e.contains("truncated or damaged"),
                "{ext} cut at {cut}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
    // docs/synth/ring_star.jpg cut after 1,500 bytes: the case of issue #11.
    let ring = std::fs::read("docs/synth/ring_star.jpg").unwrap();
    assert_eq!(load_error(dir.path(), "ring.jpg", &ring), None);
    let e = load_error(dir.path(), "ring_cut.jpg", &ring[..1500]).unwrap();
    assert!(e.contains("truncated or damaged"), "{e}");
    assert!(e.contains("FFD9"), "{e}");
}

#[test]
fn png_with_a_bad_chunk_crc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let full = gradient(image::ImageFormat::Png);
    let chunks = png_chunks(&full);
    assert_eq!(chunks.last().unwrap().2, *b"IEND", "{chunks:?}");
    for (start, len, kind) in chunks {
        let kind = String::from_utf8_lossy(&kind).into_owned();
        // A flipped bit in the chunk's data (or, for the empty IEND, its CRC).
        let mut bad = full.clone();
        bad[start + len - if len > 12 { 5 } else { 1 }] ^= 0x10;
        let e = load_error(dir.path(), &format!("bad_{kind}.png"), &bad)
            .unwrap_or_else(|| panic!("a damaged {kind} chunk was decoded"));
        assert!(e.contains("truncated or damaged"), "{kind}: {e}");
        assert!(e.contains("CRC") && e.contains(&kind), "{kind}: {e}");
    }
    // An ancillary chunk with a bad CRC too (PIL refuses those as well).
    let mut text = b"\0\0\0\x05tEXtab\0cd".to_vec();
    let crc = crc32fast::hash(&text[4..]) ^ 1;
    text.extend(crc.to_be_bytes());
    let idat = png_chunks(&full)[1].0;
    let bad = [&full[..idat], &text, &full[idat..]].concat();
    let e = load_error(dir.path(), "bad_text.png", &bad).unwrap();
    assert!(e.contains("CRC") && e.contains("tEXt"), "{e}");
    // The same chunk with a good CRC is fine.
    let n = text.len();
    text[n - 1] ^= 1;
    let good = [&full[..idat], &text, &full[idat..]].concat();
    assert_eq!(load_error(dir.path(), "good_text.png", &good), None);
}

#[test]
fn png_with_damaged_pixel_data_and_a_fixed_crc_is_refused() {
    // A broken zlib stream inside a chunk with a correct CRC: the decoder's own error.
    let dir = tempfile::tempdir().unwrap();
    let full = gradient(image::ImageFormat::Png);
    let (start, len, kind) = png_chunks(&full)[1];
    assert_eq!(&kind, b"IDAT");
    let mut bad = full.clone();
    let data = start + 8..start + len - 4;
    for b in &mut bad[data.start + 2..data.end - 4] {
        *b = 0xff;
    }
    let crc = crc32fast::hash(&bad[start + 4..data.end]);
    bad[data.end..data.end + 4].copy_from_slice(&crc.to_be_bytes());
    let e = load_error(dir.path(), "zlib.png", &bad).expect("damaged pixel data was decoded");
    assert!(e.contains("truncated or damaged"), "{e}");
}

#[test]
fn jpeg_trailers_and_markers_inside_segments_are_not_mistaken_for_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let full = gradient(image::ImageFormat::Jpeg);
    // Phones and cameras append data after the end-of-image marker: still a whole JPEG.
    let trailer = [&full[..], b"\xff\xd8 appended preview or clip \xff"].concat();
    assert_eq!(load_error(dir.path(), "trailer.jpg", &trailer), None);
    // A comment segment holding an embedded FFD9 (as an EXIF thumbnail does) right
    // after the start-of-image marker: intact, it decodes; cut in the compressed
    // data, it is still refused.
    let mut comment = b"\xff\xfe\x00\x0a\xff\xd8\x00\xff\xd9\x00".to_vec();
    comment.truncate(10);
    let with_comment = [&full[..2], &comment, &full[2..]].concat();
    assert_eq!(load_error(dir.path(), "comment.jpg", &with_comment), None);
    let cut = jpeg_scan_start(&with_comment) + 40;
    let e = load_error(dir.path(), "comment_cut.jpg", &with_comment[..cut]).unwrap();
    assert!(e.contains("FFD9"), "{e}");
    // Fill bytes before the marker are allowed.
    let n = full.len();
    let filled = [&full[..n - 2], b"\xff\xff\xff\xd9"].concat();
    assert_eq!(load_error(dir.path(), "fill.jpg", &filled), None);
}
