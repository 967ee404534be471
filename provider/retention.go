package provider

import "context"

// RetentionChecker is an optional capability of a [Provider] whose log can
// drop records by itself, as Kafka's retention and compaction do. A
// repository rebuilds its state by reading every partition from offset 0: a
// record the log dropped is an event lost, and the state restored without
// it is wrong, silently so when all of an aggregate's events went. The
// repository finds the capability by type assertion (as database/sql finds
// driver.Pinger) and calls CheckRetention before every restore, a takeover
// included; it restores nothing when CheckRetention fails. A provider whose
// log keeps everything need not implement it.
type RetentionChecker interface {
	// CheckRetention returns nil when the log keeps every record appended
	// to it for good: none expires, none is compacted away. When records
	// can go, it returns an error wrapping ErrNotRetained that names the
	// setting, its value and how to change it — unless the provider was
	// configured to allow such a log, in which case it returns nil and the
	// caller relies on [Partition.Low] being 0 to know that nothing went
	// yet. Not being able to find out (the log unreachable, access
	// refused) is another error, ErrUnavailable when it is transient.
	//
	// It is safe for concurrent use and meant to be called more than once:
	// a provider may keep an acceptance for its lifetime, so that a check
	// before every takeover costs nothing. After Close it returns
	// ErrClosed.
	CheckRetention(ctx context.Context) error
}
