package headwater

import (
	"bytes"
	"testing"
)

func TestWireRoundTripKeepsNilApartFromEmpty(t *testing.T) {
	var w writer
	w.str("topic").i32(-1).i64(1 << 40).bytes(nil).bytes([]byte{}).bytes([]byte("v")).count(1).str("h")
	r := reader{b: w.b}
	if r.str() != "topic" || r.i32() != -1 || r.i64() != 1<<40 {
		t.Fatal("fixed fields did not round-trip")
	}
	if v := r.bytes(); v != nil {
		t.Fatalf("nil came back as %q", v)
	}
	if v := r.bytes(); v == nil || len(v) != 0 {
		t.Fatalf("empty came back as %v (nil %v)", v, v == nil)
	}
	if v := r.bytes(); !bytes.Equal(v, []byte("v")) {
		t.Fatalf("bytes came back as %q", v)
	}
	if r.count() != 1 || r.str() != "h" || r.err != nil || len(r.b) != 0 {
		t.Fatalf("list did not round-trip: err %v, %d bytes left", r.err, len(r.b))
	}
}

func TestWireReaderStopsAtTheEnd(t *testing.T) {
	for _, b := range [][]byte{{1, 0}, {100, 0, 0, 0, 'a'}, {255, 255, 255, 127}} {
		r := reader{b: b}
		_ = r.str()
		_ = r.count()
		if r.err == nil {
			t.Errorf("reading %v did not fail", b)
		}
	}
	if _, err := decodeRecords([]byte{1, 0, 0, 0, 5}); err == nil {
		t.Error("a truncated record list decoded")
	}
}
