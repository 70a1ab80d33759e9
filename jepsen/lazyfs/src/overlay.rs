//! The unsynced state of one file: what its writes and truncates changed since its last fsync.
//!
//! lazyfs never passes an application's write on to the backing file. It keeps the bytes here
//! instead, as the page cache keeps dirty pages, and applies them to the backing file only when
//! the application fsyncs. A power cut then has only to forget the overlay: the backing file
//! holds exactly what was made durable.
//!
//! The application sees the backing file cut at `hidden_from` (a pending truncate), padded
//! with zeros up to `length_bytes`, with the extents laid over it:
//!
//! ```text
//! backing file:  AAAAAAAAAAAAAAAAAAAA        20 bytes on disk
//! truncate(8), then write "BB" at 12:
//! view:          AAAAAAAA0000BB              length 14, hidden_from 8, one extent at 12
//! ```
//!
//! The overlay does no I/O of its own: it reads and applies through [`Backing`], which the
//! backing [`File`] implements and tests implement with a byte vector.

use std::cmp::{max, min};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// What the overlay lies over: the backing file, or a byte vector in tests.
pub trait Backing {
    /// Reads up to `buf.len()` bytes at `offset`; fewer, or none, at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `bytes` at `offset`, extending the file if needed.
    fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends (with zeros) the file to `length_bytes`.
    fn set_length(&mut self, length_bytes: u64) -> io::Result<()>;
    /// The file's length.
    fn length(&self) -> io::Result<u64>;
}

impl Backing for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, bytes, offset)
    }

    fn set_length(&mut self, length_bytes: u64) -> io::Result<()> {
        self.set_len(length_bytes)
    }

    fn length(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// Fills `buf` from `offset`, stopping early only at the end of the backing file, and returns
/// how many bytes it filled. The rest of `buf` is left as it was.
pub fn read_full(backing: &impl Backing, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match backing.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The writes and truncates of one file since its last sync.
///
/// Callers keep every end offset at or below [`crate::limits::FILE_BYTES_MAX`], so `offset +
/// len` never overflows. The backing file must not change while an overlay lies over it, except
/// through [`Overlay::apply`], after which the overlay is discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Bytes written since the last sync, keyed by their offset. Extents never overlap or
    /// touch: a write that reaches a neighbour merges with it, so an appending writer keeps a
    /// single extent and memory stays proportional to the unsynced bytes.
    extents: BTreeMap<u64, Vec<u8>>,
    /// The sum of the extents' lengths.
    extent_bytes: u64,
    /// The file's length as the application sees it.
    length_bytes: u64,
    /// The lowest length a truncate set since the last sync, if one cut the file: backing bytes
    /// at or past it are gone from the view and read as zeros.
    hidden_from: Option<u64>,
}

impl Overlay {
    /// An overlay that changes nothing yet, over a backing file of `length_bytes`.
    pub fn new(length_bytes: u64) -> Overlay {
        Overlay { extents: BTreeMap::new(), extent_bytes: 0, length_bytes, hidden_from: None }
    }

    /// The file's length as the application sees it.
    pub fn length_bytes(&self) -> u64 {
        self.length_bytes
    }

    /// The written bytes the overlay holds (what a power cut would lose, apart from truncates).
    pub fn unsynced_bytes(&self) -> u64 {
        self.extent_bytes
    }

    /// Records a write of `data` at `offset`. Later writes win where they overlap earlier ones.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            // A write of nothing changes nothing, not even the length.
            return;
        }
        let end = offset + data.len() as u64;
        // The extent that starts at or before `offset` and reaches it becomes the base, so an
        // append grows the last extent's vector in place.
        let (start, mut bytes) = match self.extents.range(..=offset).next_back() {
            Some((&start, bytes)) if start + bytes.len() as u64 >= offset => {
                // The key was just found in the map.
                (start, self.extents.remove(&start).expect("the extent found above"))
            }
            _ => (offset, Vec::new()),
        };
        self.extent_bytes -= bytes.len() as u64;
        // Every other extent that starts inside the write, or right at its end, is absorbed.
        // Such an extent starts past `offset` (the base is the last one at or before it), so
        // the new data covers any gap between it and the base.
        while let Some((&next_start, _)) = self.extents.range(start..=end).next() {
            let next = self.extents.remove(&next_start).expect("the extent found above");
            self.extent_bytes -= next.len() as u64;
            let at = (next_start - start) as usize;
            if bytes.len() < at + next.len() {
                bytes.resize(at + next.len(), 0);
            }
            bytes[at..at + next.len()].copy_from_slice(&next);
        }
        let at = (offset - start) as usize;
        if bytes.len() < at + data.len() {
            bytes.resize(at + data.len(), 0);
        }
        bytes[at..at + data.len()].copy_from_slice(data);
        self.extent_bytes += bytes.len() as u64;
        self.length_bytes = max(self.length_bytes, end);
        self.extents.insert(start, bytes);
        self.assert_separate_from_neighbours(start);
    }

    /// Records a truncate (or extension) to `length_bytes`.
    pub fn truncate(&mut self, length_bytes: u64) {
        if length_bytes < self.length_bytes {
            self.hidden_from = Some(min(self.hidden_from.unwrap_or(u64::MAX), length_bytes));
            // Drop every extent at or past the cut, then shorten the one the cut falls in.
            let beyond = self.extents.split_off(&length_bytes);
            self.extent_bytes -= beyond.values().map(|bytes| bytes.len() as u64).sum::<u64>();
            if let Some((&start, bytes)) = self.extents.iter_mut().next_back() {
                let keep = length_bytes - start;
                if (bytes.len() as u64) > keep {
                    self.extent_bytes -= bytes.len() as u64 - keep;
                    bytes.truncate(keep as usize);
                    bytes.shrink_to_fit();
                }
            }
        }
        self.length_bytes = length_bytes;
    }

    /// Reads up to `size` bytes of the application's view at `offset`: backing bytes where
    /// nothing was written, written bytes over them, zeros in holes. Short only at the end.
    pub fn read(&self, backing: &impl Backing, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        let end = min(offset.saturating_add(size as u64), self.length_bytes);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let backing_end = min(end, self.hidden_from.unwrap_or(u64::MAX));
        if backing_end > offset {
            // Past the backing file's end the buffer keeps its zeros.
            read_full(backing, &mut buf[..(backing_end - offset) as usize], offset)?;
        }
        // The extent that may start before `offset` and reach into the range, then the rest.
        let first = self.extents.range(..=offset).next_back().map_or(offset, |(&start, _)| start);
        for (&start, bytes) in self.extents.range(first..end) {
            let (low, high) = (max(start, offset), min(start + bytes.len() as u64, end));
            if low < high {
                buf[(low - offset) as usize..(high - offset) as usize]
                    .copy_from_slice(&bytes[(low - start) as usize..(high - start) as usize]);
            }
        }
        Ok(buf)
    }

    /// Makes the backing file equal to the application's view: cut it where a truncate hid its
    /// bytes, write every extent, then set its final length. It does not sync; the caller does.
    /// Applying twice gives the same file, so after a failure the overlay can be kept and
    /// applied again.
    pub fn apply(&self, backing: &mut impl Backing) -> io::Result<()> {
        if let Some(hidden_from) = self.hidden_from {
            backing.set_length(hidden_from)?;
        }
        for (&start, bytes) in &self.extents {
            backing.write_all_at(bytes, start)?;
        }
        // Skip a truncate to the length the file already has: it would still change its
        // timestamps for nothing.
        if backing.length()? != self.length_bytes {
            backing.set_length(self.length_bytes)?;
        }
        Ok(())
    }

    /// The extent at `start` must not overlap or touch either neighbour (writes merge them),
    /// and must end within the file.
    fn assert_separate_from_neighbours(&self, start: u64) {
        let end = start + self.extents[&start].len() as u64;
        assert!(end <= self.length_bytes, "an extent ends at {end}, past the length {}", self.length_bytes);
        if let Some((&before, bytes)) = self.extents.range(..start).next_back() {
            assert!(before + (bytes.len() as u64) < start, "extents at {before} and {start} touch");
        }
        if let Some((&after, _)) = self.extents.range(start + 1..).next() {
            assert!(end < after, "extents at {start} and {after} touch");
        }
    }

    /// Checks every invariant over the whole overlay (tests only: it walks every extent).
    #[cfg(test)]
    fn check(&self) {
        let mut end_previous: Option<u64> = None;
        let mut total = 0;
        for (&start, bytes) in &self.extents {
            assert!(!bytes.is_empty(), "an empty extent at {start}");
            if let Some(end_previous) = end_previous {
                assert!(end_previous < start, "extents overlap or touch at {start}");
            }
            end_previous = Some(start + bytes.len() as u64);
            total += bytes.len() as u64;
        }
        assert_eq!(total, self.extent_bytes, "extent_bytes is off");
        assert!(end_previous.unwrap_or(0) <= self.length_bytes, "an extent ends past the length");
        if let Some(hidden_from) = self.hidden_from {
            assert!(hidden_from <= self.length_bytes, "the hidden bytes start past the length");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backing file in memory.
    impl Backing for Vec<u8> {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let offset = min(offset as usize, self.len());
            // Return at most 3 bytes at a time, so callers must handle short reads.
            let count = min(min(buf.len(), self.len() - offset), 3);
            buf[..count].copy_from_slice(&self[offset..offset + count]);
            Ok(count)
        }

        fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
            let end = offset as usize + bytes.len();
            if self.len() < end {
                self.resize(end, 0);
            }
            self[offset as usize..end].copy_from_slice(bytes);
            Ok(())
        }

        fn set_length(&mut self, length_bytes: u64) -> io::Result<()> {
            self.resize(length_bytes as usize, 0);
            Ok(())
        }

        fn length(&self) -> io::Result<u64> {
            Ok(self.len() as u64)
        }
    }

    fn view(overlay: &Overlay, backing: &Vec<u8>) -> Vec<u8> {
        overlay.check();
        let whole = overlay.read(backing, 0, usize::MAX).unwrap();
        assert_eq!(whole.len() as u64, overlay.length_bytes());
        whole
    }

    #[test]
    fn a_write_shows_over_the_backing_bytes_and_leaves_them_alone() {
        let backing = b"0123456789".to_vec();
        let mut overlay = Overlay::new(10);
        overlay.write(3, b"ab");
        assert_eq!(view(&overlay, &backing), b"012ab56789");
        assert_eq!(overlay.read(&backing, 2, 4).unwrap(), b"2ab5");
        assert_eq!(overlay.read(&backing, 4, 1).unwrap(), b"b");
        assert_eq!(overlay.read(&backing, 10, 5).unwrap(), b"");
        assert_eq!(overlay.read(&backing, 8, 5).unwrap(), b"89", "a read is cut at the length");
        assert_eq!(backing, b"0123456789");
        assert_eq!(overlay.unsynced_bytes(), 2);
    }

    #[test]
    fn appends_grow_the_length_and_stay_one_extent() {
        let backing = b"head".to_vec();
        let mut overlay = Overlay::new(4);
        for round in 0..100u64 {
            overlay.write(4 + round * 10, b"0123456789");
        }
        overlay.check();
        assert_eq!(overlay.extents.len(), 1);
        assert_eq!(overlay.unsynced_bytes(), 1000);
        assert_eq!(overlay.length_bytes(), 1004);
        assert_eq!(&view(&overlay, &backing)[..14], b"head0123456789");
    }

    #[test]
    fn overlapping_writes_keep_the_latest_bytes() {
        let backing = Vec::new();
        let mut overlay = Overlay::new(0);
        overlay.write(0, b"aaaa");
        overlay.write(2, b"bbbb");
        overlay.write(1, b"cc");
        assert_eq!(view(&overlay, &backing), b"accbbb");
        assert_eq!(overlay.extents.len(), 1);
        assert_eq!(overlay.unsynced_bytes(), 6);
    }

    #[test]
    fn a_write_bridging_two_extents_merges_them_and_keeps_their_outer_bytes() {
        let backing = b"................".to_vec();
        let mut overlay = Overlay::new(16);
        overlay.write(0, b"ab");
        overlay.write(6, b"cdef");
        overlay.write(12, b"gh");
        assert_eq!(overlay.extents.len(), 3);
        overlay.write(1, b"XXXXXXX"); // 1..8: over the end of the first and the start of the second
        assert_eq!(view(&overlay, &backing), b"aXXXXXXXef..gh..");
        assert_eq!(overlay.extents.len(), 2);
        overlay.write(10, b"YY"); // touches the merged extent's end and the last one's start
        assert_eq!(overlay.extents.len(), 1);
        assert_eq!(view(&overlay, &backing), b"aXXXXXXXefYYgh..");
    }

    #[test]
    fn a_write_past_the_end_leaves_a_hole_of_zeros() {
        let backing = b"abc".to_vec();
        let mut overlay = Overlay::new(3);
        overlay.write(6, b"z");
        assert_eq!(view(&overlay, &backing), b"abc\0\0\0z");
    }

    #[test]
    fn a_truncate_hides_backing_bytes_even_after_extending_again() {
        let backing = b"abcdefgh".to_vec();
        let mut overlay = Overlay::new(8);
        overlay.truncate(3);
        assert_eq!(view(&overlay, &backing), b"abc");
        overlay.truncate(6);
        assert_eq!(view(&overlay, &backing), b"abc\0\0\0", "the cut bytes must not come back");
        overlay.write(7, b"z");
        assert_eq!(view(&overlay, &backing), b"abc\0\0\0\0z");
        assert_eq!(backing, b"abcdefgh");
    }

    #[test]
    fn a_truncate_cuts_the_written_bytes_too() {
        let backing = Vec::new();
        let mut overlay = Overlay::new(0);
        overlay.write(0, b"0123456789");
        overlay.write(20, b"far");
        overlay.truncate(5);
        assert_eq!(view(&overlay, &backing), b"01234");
        assert_eq!(overlay.unsynced_bytes(), 5);
        overlay.truncate(8);
        assert_eq!(view(&overlay, &backing), b"01234\0\0\0");
    }

    #[test]
    fn apply_makes_the_backing_file_equal_to_the_view() {
        let mut backing = b"abcdefghijklmnop".to_vec();
        let mut overlay = Overlay::new(16);
        overlay.write(2, b"XY");
        overlay.truncate(10);
        overlay.write(12, b"Z");
        let expected = view(&overlay, &backing);
        overlay.apply(&mut backing).unwrap();
        assert_eq!(backing, expected);
        assert_eq!(backing, b"abXYefghij\0\0Z");
        overlay.apply(&mut backing).unwrap();
        assert_eq!(backing, expected, "applying again changes nothing");
    }

    #[test]
    fn dropping_the_overlay_leaves_only_what_was_applied() {
        // What a power cut does: everything since the last apply is gone, the rest stays.
        let mut backing = Vec::new();
        let mut overlay = Overlay::new(0);
        overlay.write(0, b"synced");
        overlay.apply(&mut backing).unwrap();
        let mut overlay = Overlay::new(backing.len() as u64);
        overlay.write(6, b" and not");
        overlay.truncate(2);
        assert_eq!(view(&overlay, &backing), b"sy");
        drop(overlay);
        assert_eq!(backing, b"synced");
    }

    /// A small deterministic generator, so the run below needs no crate and replays exactly.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % bound
        }
    }

    /// Random writes, truncates, reads and applies against a plain vector that models the file.
    #[test]
    fn random_operations_match_a_model_file() {
        for seed in 0..200 {
            let mut random = Lcg(seed);
            let mut backing: Vec<u8> = (0..random.below(64)).map(|i| i as u8).collect();
            let mut model = backing.clone();
            let mut overlay = Overlay::new(backing.len() as u64);
            for step in 0..60 {
                match random.below(10) {
                    0..=5 => {
                        let offset = random.below(96);
                        let data: Vec<u8> = (0..random.below(24)).map(|_| random.below(256) as u8).collect();
                        overlay.write(offset, &data);
                        if !data.is_empty() {
                            let end = offset as usize + data.len();
                            if model.len() < end {
                                model.resize(end, 0);
                            }
                            model[offset as usize..end].copy_from_slice(&data);
                        }
                    }
                    6 | 7 => {
                        let length = random.below(96);
                        overlay.truncate(length);
                        model.resize(length as usize, 0);
                    }
                    8 => {
                        let (offset, size) = (random.below(100), random.below(40) as usize);
                        let expected: Vec<u8> = model.iter().skip(offset as usize).take(size).copied().collect();
                        assert_eq!(overlay.read(&backing, offset, size).unwrap(), expected, "seed {seed} step {step}");
                    }
                    _ => {
                        overlay.apply(&mut backing).unwrap();
                        assert_eq!(backing, model, "seed {seed} step {step}: apply");
                        overlay = Overlay::new(backing.len() as u64);
                    }
                }
                assert_eq!(view(&overlay, &backing), model, "seed {seed} step {step}");
            }
        }
    }
}
