//! Kafka framing: request decoding and response encoding. Total over arbitrary input: every
//! byte sequence either decodes or yields a [`DecodeError`] that says what to do; nothing here
//! panics on bad input.
//!
//! A frame is `size: i32` followed by `size` bytes. The driver reads the size, refuses sizes
//! over `socket.request.max.bytes` before allocating, and hands the body to
//! [`decode_request`].

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::broker::versions::supported_range;

/// A request ready for the broker.
#[derive(Debug, Clone)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub body: RequestKind,
}

/// Why a frame could not be decoded, and what the driver does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a request header's fixed part. Close the connection.
    TooShort,
    /// An API key Headwater does not serve. Kafka closes the connection.
    UnknownApi { api_key: i16, correlation_id: i32 },
    /// ApiVersions at a version newer than ours: answer with
    /// [`encode_api_versions_unsupported`], keep the connection.
    ApiVersionsTooNew { correlation_id: i32 },
    /// A served API at a version outside our range. Close the connection.
    UnsupportedVersion { api_key: i16, api_version: i16, correlation_id: i32 },
    /// The header or body does not parse. Close the connection.
    Malformed { api_key: i16, api_version: i16, correlation_id: i32, reason: String },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => write!(f, "frame shorter than a request header"),
            DecodeError::UnknownApi { api_key, .. } => write!(f, "unknown or unsupported API key {api_key}"),
            DecodeError::ApiVersionsTooNew { .. } => write!(f, "ApiVersions version newer than supported"),
            DecodeError::UnsupportedVersion { api_key, api_version, .. } => {
                write!(f, "API key {api_key} version {api_version} is not supported")
            }
            DecodeError::Malformed { api_key, api_version, reason, .. } => {
                write!(f, "malformed request (API key {api_key} v{api_version}): {reason}")
            }
        }
    }
}

/// Decodes one frame body (without its size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort);
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some((key, min, max)) = supported_range(api_key) else {
        return Err(DecodeError::UnknownApi { api_key, correlation_id });
    };
    if key == ApiKey::ApiVersions && api_version > max {
        return Err(DecodeError::ApiVersionsTooNew { correlation_id });
    }
    if api_version < min || api_version > max {
        return Err(DecodeError::UnsupportedVersion { api_key, api_version, correlation_id });
    }
    let malformed = |reason: String| DecodeError::Malformed { api_key, api_version, correlation_id, reason };
    let header_version = key.request_header_version(api_version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| malformed(format!("header: {e}")))?;
    let body = RequestKind::decode(key, &mut frame, api_version).map_err(|e| malformed(format!("body: {e}")))?;
    Ok(DecodedRequest {
        api_key: key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|c| c.to_string()),
        body,
    })
}

/// Encodes a response frame, size prefix included. An error here is a broker bug (a field set
/// that the version does not have); the driver logs it and closes the connection.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, String> {
    // ApiVersions responses always use header v0, so that any client can read them.
    let header_version = if api_key == ApiKey::ApiVersions { 0 } else { api_key.response_header_version(api_version) };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|e| format!("{api_key:?} v{api_version} header: {e}"))?;
    body.encode(&mut buf, api_version).map_err(|e| format!("{api_key:?} v{api_version} body: {e}"))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| "response larger than 2 GiB".to_string())?;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// The ApiVersions v0 reply with UNSUPPORTED_VERSION and our full key list.
pub fn encode_api_versions_unsupported(correlation_id: i32) -> BytesMut {
    let body = ResponseKind::ApiVersions(crate::broker::api_versions_unsupported());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body).expect("a v0 ApiVersions response always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest};
    use proptest::prelude::*;

    fn frame(api_key: i16, version: i16, header_version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some("test".into()))
            .encode(&mut buf, header_version)
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_metadata() {
        let bytes = frame(3, 9, 2, &MetadataRequest::default());
        let decoded = decode_request(bytes).unwrap();
        assert_eq!(decoded.api_key, ApiKey::Metadata);
        assert_eq!(decoded.api_version, 9);
        assert_eq!(decoded.correlation_id, 77);
        assert_eq!(decoded.client_id.as_deref(), Some("test"));
    }

    #[test]
    fn unknown_key_and_versions() {
        let bytes = frame(3, 9, 2, &MetadataRequest::default());
        let mut raw = bytes.to_vec();
        raw[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert_eq!(
            decode_request(Bytes::from(raw)).unwrap_err(),
            DecodeError::UnknownApi { api_key: 999, correlation_id: 77 }
        );
        let mut raw = bytes.to_vec();
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(Bytes::from(raw)),
            Err(DecodeError::UnsupportedVersion { api_version: 99, .. })
        ));
        let mut raw = bytes.to_vec();
        raw[0..2].copy_from_slice(&18i16.to_be_bytes());
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert_eq!(
            decode_request(Bytes::from(raw)).unwrap_err(),
            DecodeError::ApiVersionsTooNew { correlation_id: 77 }
        );
    }

    #[test]
    fn truncated_body_is_malformed() {
        let bytes = frame(3, 9, 2, &MetadataRequest::default().with_topics(None));
        let cut = bytes.slice(0..bytes.len() - 1);
        assert!(matches!(decode_request(cut), Err(DecodeError::Malformed { .. })));
        assert_eq!(decode_request(Bytes::from_static(&[0, 3])).unwrap_err(), DecodeError::TooShort);
    }

    #[test]
    fn unsupported_api_versions_reply_is_v0_with_error() {
        let mut encoded = encode_api_versions_unsupported(5).freeze();
        let size = i32::from_be_bytes(encoded[0..4].try_into().unwrap());
        assert_eq!(size as usize, encoded.len() - 4);
        // The length prefix, checked above.
        let _ = encoded.split_to(4);
        let header = ResponseHeader::decode(&mut encoded, 0).unwrap();
        assert_eq!(header.correlation_id, 5);
        let body = ApiVersionsResponse::decode(&mut encoded, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert!(body.api_keys.iter().any(|k| k.api_key == 0));
    }

    proptest! {
        // Fuzz target for the frame decoder: any bytes after a valid-looking header prefix
        // either decode or give an error; none panic. The codec pre-allocates from array
        // counts on the wire; the test binary runs with `alloc_guard` as the server does, so
        // a count of two billion costs address space, not an abort.
        #[test]
        fn decoder_is_total(api in 0i16..70, version in -1i16..20, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut raw = Vec::new();
            raw.extend_from_slice(&api.to_be_bytes());
            raw.extend_from_slice(&version.to_be_bytes());
            raw.extend_from_slice(&1i32.to_be_bytes());
            raw.extend_from_slice(&body);
            // Only that decoding returns (an error or a request), never panics, matters.
            let _ = decode_request(Bytes::from(raw));
        }
    }
}
