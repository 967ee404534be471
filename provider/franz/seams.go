package franz

import "github.com/rehydrate/rehydrate/provider/kafkagroup"

// Test seams, as database/sql's hookTxGrabConn: package-level, nil in
// production, set only by the tests (export_test.go), so that no member
// carries state it has only for them. Each is asked about one member.
var (
	// seamStayOut reports whether the member, having lost its partitions,
	// leaves the group instead of rejoining.
	seamStayOut func(*member) bool
	// seamMetadata returns the generation and member id the member's
	// transactions send instead of the group client's, or nil.
	seamMetadata func(*member) *kafkagroup.Metadata
)
