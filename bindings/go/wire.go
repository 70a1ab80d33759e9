package headwater

// The little-endian layout of variable-length values crossing the C ABI, as
// bindings/c/src/wire.rs documents: str is a u32 length and UTF-8 bytes; bytes? an i32 length
// (-1 for nil) and the bytes; a list a u32 count and the items.

import (
	"encoding/binary"
	"errors"
)

type writer struct{ b []byte }

func (w *writer) u32(v uint32) *writer { w.b = binary.LittleEndian.AppendUint32(w.b, v); return w }
func (w *writer) i16(v int16) *writer {
	w.b = binary.LittleEndian.AppendUint16(w.b, uint16(v))
	return w
}
func (w *writer) i32(v int32) *writer {
	w.b = binary.LittleEndian.AppendUint32(w.b, uint32(v))
	return w
}
func (w *writer) i64(v int64) *writer {
	w.b = binary.LittleEndian.AppendUint64(w.b, uint64(v))
	return w
}
func (w *writer) count(n int) *writer { return w.u32(uint32(n)) }

func (w *writer) str(s string) *writer {
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
	return w
}

func (w *writer) bytes(v []byte) *writer {
	if v == nil {
		return w.i32(-1)
	}
	w.i32(int32(len(v)))
	w.b = append(w.b, v...)
	return w
}

var errShort = errors.New("headwater: malformed reply from the native library")

// reader decodes what the library reports. The library writes these buffers itself, so a
// short one is a bug; reads past the end set err rather than panic.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.err = errShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *reader) i32() int32 { return int32(r.u32()) }

func (r *reader) i64() int64 {
	if v := r.take(8); v != nil {
		return int64(binary.LittleEndian.Uint64(v))
	}
	return 0
}

func (r *reader) count() int {
	n := r.u32()
	if int64(n) > int64(len(r.b)) {
		r.err = errShort
		return 0
	}
	return int(n)
}

func (r *reader) str() string { return string(r.take(int(r.u32()))) }

func (r *reader) bytes() []byte {
	n := r.i32()
	if n < 0 || r.err != nil {
		return nil
	}
	v := r.take(int(n))
	if v == nil {
		return nil
	}
	return append(make([]byte, 0, n), v...)
}
