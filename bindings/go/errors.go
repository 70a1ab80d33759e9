package headwater

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors, one per kind. Every error the SDK returns from an operation is an *Error
// that unwraps to one of these, so callers can test the kind with errors.Is and read the
// details (Kafka error code, retriability) with errors.As:
//
//	if errors.Is(err, headwater.ErrUnknownTopic) { ... }
//	var herr *headwater.Error
//	if errors.As(err, &herr) && herr.Retriable { ... }
var (
	ErrTimeout       = errors.New("headwater: timed out")
	ErrUnknownTopic  = errors.New("headwater: unknown topic or partition")
	ErrCommitFailed  = errors.New("headwater: offset commit failed")
	ErrFatal         = errors.New("headwater: fatal client error")
	ErrBroker        = errors.New("headwater: broker error")
	ErrConnection    = errors.New("headwater: connection error")
	ErrInvalidConfig = errors.New("headwater: invalid config")
	ErrClientClosed  = errors.New("headwater: client closed")
)

// Error is an error from the client or from a broker.
type Error struct {
	// Kind is one of the sentinel errors above.
	Kind error
	// Code is the Kafka error code when a broker sent one, else 0.
	Code int16
	// Retriable says whether the same call may succeed if tried again.
	Retriable bool
	// Message says what happened.
	Message string
}

func (e *Error) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("%s (Kafka error %d): %s", e.Kind, e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

// Unwrap returns the kind, so errors.Is(err, ErrTimeout) and the like work.
func (e *Error) Unwrap() error { return e.Kind }

// kinds maps HwStatus values to sentinels (the values are fixed by the C header).
var kinds = map[int32]error{
	1: ErrTimeout,
	2: ErrUnknownTopic,
	3: ErrCommitFailed,
	4: ErrFatal,
	5: ErrBroker,
	6: ErrConnection,
	7: ErrInvalidConfig,
	8: ErrClientClosed,
}

// err turns an operation's result into an error: nil on success, ctx's error when the
// operation was cancelled because ctx ended.
func (r result) err(ctx context.Context) error {
	switch r.status {
	case statusOK:
		return nil
	case statusCancelled:
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.Canceled
	}
	kind, ok := kinds[r.status]
	if !ok {
		kind = ErrFatal
	}
	return &Error{Kind: kind, Code: r.code, Retriable: r.retriable, Message: r.message}
}

func configError(format string, args ...any) error {
	return &Error{Kind: ErrInvalidConfig, Message: fmt.Sprintf(format, args...)}
}
