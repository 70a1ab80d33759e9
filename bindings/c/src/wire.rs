//! The byte layout of everything variable-length that crosses the C ABI: records, lists,
//! headers, group descriptions. Little-endian throughout:
//!
//! - `str`: u32 length, then UTF-8 bytes;
//! - `bytes?`: i32 length (-1 for null), then the bytes;
//! - `i16`, `i32`, `i64`, `u32`: fixed width;
//! - a list: u32 count, then the items.
//!
//! Callers own their buffers; the library copies what it reads before the call returns, and
//! the buffers it hands to callbacks live only for the duration of the callback.

use headwater_client::{Error, Result};

#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.u32(len_u32(v.len()));
        self.0.extend_from_slice(v.as_bytes());
        self
    }

    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(bytes) => {
                self.i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
                self.0.extend_from_slice(bytes);
            }
            None => {
                self.i32(-1);
            }
        }
        self
    }

    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        self.opt_bytes(v.map(str::as_bytes))
    }

    pub fn count(&mut self, n: usize) -> &mut Self {
        self.u32(len_u32(n))
    }
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads a caller's buffer; every read checks the length, so a short or malformed buffer is
/// a config error, never an out-of-bounds read.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::config("malformed argument buffer: it ends early"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_le_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn str(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::config("a string argument is not UTF-8"))
    }

    pub fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize)?.to_vec()))
    }

    pub fn count(&mut self) -> Result<usize> {
        let n = self.u32()? as usize;
        // Every item takes at least one byte: a count beyond the buffer is malformed, and must
        // not make the caller reserve memory for it.
        if n > self.buf.len() {
            return Err(Error::config("malformed argument buffer: a count exceeds its bytes"));
        }
        Ok(n)
    }

    pub fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::config("malformed argument buffer: bytes left over"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::default();
        w.str("topic").i32(-1).i64(7).opt_bytes(None).opt_bytes(Some(b"v")).count(2).i16(3);
        let mut r = Reader::new(&w.0);
        assert_eq!(r.str().unwrap(), "topic");
        assert_eq!(r.i32().unwrap(), -1);
        assert_eq!(r.i64().unwrap(), 7);
        assert_eq!(r.opt_bytes().unwrap(), None);
        assert_eq!(r.opt_bytes().unwrap(), Some(b"v".to_vec()));
        assert_eq!(r.count().unwrap(), 2);
        assert!(r.finish().is_err(), "the i16 is still unread");
        assert_eq!(r.i16().unwrap(), 3);
        r.finish().unwrap();
    }

    #[test]
    fn short_or_lying_buffers_are_errors() {
        assert!(Reader::new(&[1, 0]).u32().is_err());
        // A string claiming 100 bytes with 2 present.
        assert!(Reader::new(&[100, 0, 0, 0, b'a', b'b']).str().is_err());
        // A count of 2^32-1 items in a 4-byte buffer.
        assert!(Reader::new(&[255, 255, 255, 255]).count().is_err());
        assert!(Reader::new(&[2, 0, 0, 0, 0xff, 0xfe]).str().is_err(), "not UTF-8");
    }
}
