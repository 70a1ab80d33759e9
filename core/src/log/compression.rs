//! Decompression of Kafka record sets, for the few places the broker must look at records
//! inside a compressed batch (ListOffsets by timestamp). The broker never recompresses: batches
//! are stored and served as producers sent them.
//!
//! Codecs by Kafka's attribute bits: 1 gzip, 2 snappy (raw, as librdkafka writes it, or in the
//! xerial framing that the Java client's snappy-java writes), 3 lz4 (frame format), 4 zstd
//! (one or more frames). Output is capped so a small batch cannot expand into gigabytes.

use std::io::Read;

/// Largest decompressed record set the broker will produce (a decompression-bomb cap).
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

/// Decompresses `data` written with `codec`, or explains why it cannot.
pub fn decompress(codec: i16, data: &[u8]) -> Result<Vec<u8>, String> {
    match codec {
        0 => Ok(data.to_vec()),
        1 => read_capped(flate2::read::GzDecoder::new(data)),
        2 => snappy(data),
        3 => read_capped(lz4_flex::frame::FrameDecoder::new(data)),
        4 => zstd(data),
        other => Err(format!("unknown compression codec {other}")),
    }
}

fn read_capped(reader: impl Read) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limit = DECOMPRESSED_BYTES_MAX as u64 + 1;
    reader.take(limit).read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        return Err(format!("decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes"));
    }
    Ok(out)
}

fn snappy(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() >= 16 && &data[..8] == XERIAL_MAGIC {
        // xerial: magic, version i32, compatible version i32, then [length i32][raw block]...
        let mut out = Vec::new();
        let mut position = 16;
        while position < data.len() {
            let length_bytes: [u8; 4] =
                data.get(position..position + 4).ok_or("truncated xerial block length")?.try_into().expect("4 bytes");
            let length =
                usize::try_from(i32::from_be_bytes(length_bytes)).map_err(|_| "negative xerial block length")?;
            position += 4;
            let block = data.get(position..position + length).ok_or("truncated xerial block")?;
            position += length;
            out.extend(snappy_raw(block, DECOMPRESSED_BYTES_MAX - out.len())?);
        }
        Ok(out)
    } else {
        snappy_raw(data, DECOMPRESSED_BYTES_MAX)
    }
}

fn snappy_raw(block: &[u8], room_bytes: usize) -> Result<Vec<u8>, String> {
    let length = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    if length > room_bytes {
        return Err(format!("decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes"));
    }
    snap::raw::Decoder::new().decompress_vec(block).map_err(|e| e.to_string())
}

fn zstd(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut data).map_err(|e| e.to_string())?;
        let room = (DECOMPRESSED_BYTES_MAX - out.len()) as u64 + 1;
        (&mut decoder).take(room).read_to_end(&mut out).map_err(|e| e.to_string())?;
        if out.len() > DECOMPRESSED_BYTES_MAX {
            return Err(format!("decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes"));
        }
    }
    Ok(out)
}

/// Compresses a record set with `codec`, in the framing both Java and librdkafka read (snappy
/// in xerial framing, lz4 frames, zstd at its fastest level). For clients: the broker never
/// recompresses.
pub fn compress(codec: i16, data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    match codec {
        0 => Ok(data.to_vec()),
        1 => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(data).map_err(|e| e.to_string())?;
            encoder.finish().map_err(|e| e.to_string())
        }
        2 => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(32 * 1024) {
                let compressed = encoder.compress_vec(block).map_err(|e| e.to_string())?;
                let length = i32::try_from(compressed.len()).map_err(|_| "snappy block too large")?;
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        3 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data).map_err(|e| e.to_string())?;
            encoder.finish().map_err(|e| e.to_string())
        }
        4 => Ok(ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)),
        other => Err(format!("unknown compression codec {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn compress_round_trips_through_decompress() {
        let data = sample();
        for codec in 0..=4 {
            let compressed = compress(codec, &data).unwrap();
            assert_eq!(decompress(codec, &compressed).unwrap(), data, "codec {codec}");
            if codec != 0 {
                assert!(compressed.len() < data.len() / 2, "codec {codec} compresses");
            }
        }
        assert!(compress(5, &data).is_err());
    }

    fn sample() -> Vec<u8> {
        (0..5000u32).flat_map(|i| format!("record {i};").into_bytes()).collect()
    }

    #[test]
    fn gzip_round_trip() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&sample()).unwrap();
        assert_eq!(decompress(1, &encoder.finish().unwrap()).unwrap(), sample());
    }

    #[test]
    fn snappy_raw_and_xerial() {
        let raw = snap::raw::Encoder::new().compress_vec(&sample()).unwrap();
        assert_eq!(decompress(2, &raw).unwrap(), sample());
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&1i32.to_be_bytes());
        xerial.extend_from_slice(&1i32.to_be_bytes());
        for chunk in sample().chunks(7000) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&(block.len() as i32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        assert_eq!(decompress(2, &xerial).unwrap(), sample());
    }

    #[test]
    fn lz4_frame_round_trip() {
        let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
        encoder.write_all(&sample()).unwrap();
        assert_eq!(decompress(3, &encoder.finish().unwrap()).unwrap(), sample());
    }

    #[test]
    fn zstd_one_and_two_frames() {
        let frame = ruzstd::encoding::compress_to_vec(&sample()[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(decompress(4, &frame).unwrap(), sample());
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(decompress(4, &two).unwrap().len(), sample().len() * 2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in 1..=4 {
            assert!(decompress(codec, b"definitely not compressed").is_err(), "codec {codec}");
        }
        assert!(decompress(9, b"").is_err());
    }

    #[test]
    fn bombs_are_capped() {
        let zeros = vec![0u8; DECOMPRESSED_BYTES_MAX + 10];
        let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
        encoder.write_all(&zeros).unwrap();
        assert!(decompress(3, &encoder.finish().unwrap()).is_err());
    }
}
