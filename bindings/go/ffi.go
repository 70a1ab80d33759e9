package headwater

// The one place that talks to the C ABI (bindings/c/include/headwater.h). Every call that
// reaches a broker is an operation: the library returns an id at once and later calls
// hwGoComplete exactly once with the result, from one of its own threads. The Go side
// passes a cgo.Handle as the callback's context; the handle holds what to do with the
// result, and hwGoComplete deletes it.

/*
#cgo CFLAGS: -I${SRCDIR}/../c/include
#cgo LDFLAGS: ${SRCDIR}/lib/libheadwater_ffi.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include "callbacks.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"unsafe"
)

// result is an operation's outcome, copied out of the library's memory.
type result struct {
	status    int32
	code      int16
	retriable bool
	message   string
	data      []byte
}

// completion receives an operation's result. It runs on a library thread (or on the
// goroutine that cancelled the operation) and must not block.
type completion func(result)

// The status values of HwStatus.
const (
	statusOK        = int32(C.HW_STATUS_OK)
	statusCancelled = int32(C.HW_STATUS_CANCELLED)
)

//export hwGoComplete
func hwGoComplete(handle C.size_t, r *C.HwResult) {
	h := cgo.Handle(handle)
	done := h.Value().(completion)
	h.Delete()
	res := result{status: int32(r.status), code: int16(r.code), retriable: bool(r.retriable)}
	if r.message_len > 0 {
		res.message = string(unsafe.Slice((*byte)(unsafe.Pointer(r.message)), int(r.message_len)))
	}
	if r.data_len > 0 {
		res.data = append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(r.data)), int(r.data_len))...)
	}
	done(res)
}

// callback is the C function pointer every operation reports through.
var callback = C.HwCallback(unsafe.Pointer(C.hwGoComplete))

// starter begins one operation: it calls the C function with the callback and context it is
// given and returns the operation's id.
type starter func(cb C.HwCallback, context C.size_t) C.uint64_t

// start begins an operation whose result goes to done.
func start(begin starter, done completion) uint64 {
	h := cgo.NewHandle(done)
	return uint64(begin(callback, C.size_t(h)))
}

// await runs an operation and waits for it. When ctx ends first the operation is cancelled:
// cancellable ones report HW_STATUS_CANCELLED at once, the others (polls, closes) are waited
// for, since what they return must not be dropped. Either way exactly one result comes.
func await(ctx context.Context, begin starter) result {
	if err := ctx.Err(); err != nil {
		return result{status: statusCancelled}
	}
	ch := make(chan result, 1)
	id := start(begin, func(r result) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		C.hw_cancel(C.uint64_t(id))
		return <-ch
	}
}

// cancel ends operation id early if it is still running.
func cancel(id uint64) {
	C.hw_cancel(C.uint64_t(id))
}

// buf returns a pointer and length for b, for a C call that copies it before returning.
func buf(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))), C.size_t(len(b))
}

// cstrings holds C copies of Go strings until free.
type cstrings []*C.char

func (s *cstrings) of(v string) *C.char {
	if v == "" {
		return nil
	}
	c := C.CString(v)
	*s = append(*s, c)
	return c
}

func (s cstrings) free() {
	for _, c := range s {
		C.free(unsafe.Pointer(c))
	}
}

const errbufLen = 1024

// errbuf is where a constructor that fails writes its message.
type errbuf [errbufLen]C.char

func (e *errbuf) ptr() (*C.char, C.size_t) { return &e[0], errbufLen }

func (e *errbuf) String() string { return C.GoString(&e[0]) }
